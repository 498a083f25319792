"""Server TLS credentials that follow their files: a rotated certificate is served without a restart.

Why a fetcher: gRPC asks `grpc.dynamic_ssl_server_credentials` for a new certificate configuration before
each TLS handshake; the fetcher compares the files' (mtime, size, inode) with what it loaded last and only
reads them when one changed, so the check costs three `stat` calls. A half-written or mismatched pair
(cert-manager and the kubelet write new files beside the old ones and swap a symlink, but other tools may
not) fails to load, is logged, and the last good pair keeps being served; the next handshake tries again.
Connections already open keep the certificate they were set up with.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import grpc

log = logging.getLogger(__name__)

_Stamp = tuple[tuple[int, int, int] | None, ...]


class ReloadingCertificate:
    """A certificate chain, its key and optionally a client CA, re-read when any of the files changes."""

    def __init__(self, *, cert_file: Path, key_file: Path, client_ca_file: Path | None = None) -> None:
        self._files: tuple[Path, ...] = (cert_file, key_file) + ((client_ca_file,) if client_ca_file else ())
        self._lock = threading.Lock()
        self._stamp = self._current_stamp()
        self._failed: _Stamp | None = None
        self.loads = 0
        self._initial = self._load()

    @property
    def require_client_auth(self) -> bool:
        """Whether clients must present a certificate signed by the client CA (mutual TLS)."""
        return len(self._files) == 3

    def credentials(self) -> grpc.ServerCredentials:
        """Server credentials that call `fetch` before each handshake."""
        return grpc.dynamic_ssl_server_credentials(
            self._initial, self.fetch, require_client_authentication=self.require_client_auth
        )

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """A new configuration when the files changed since the last load, else None (keep the current)."""
        stamp = self._current_stamp()
        if stamp in (self._stamp, self._failed):
            return None
        with self._lock:
            if stamp in (self._stamp, self._failed):
                return None
            try:
                configuration = self._load()
            except Exception as error:  # any failure keeps the last good pair serving
                log.warning(
                    "TLS files changed but cannot be loaded; serving the previous certificate",
                    extra={"files": [str(path) for path in self._files], "error": str(error)},
                )
                self._failed = stamp  # logged once per broken state, retried on the next change
                return None
            self._stamp = stamp
            log.info("TLS certificate reloaded", extra={"file": str(self._files[0])})
            return configuration

    def _current_stamp(self) -> _Stamp:
        stamps: list[tuple[int, int, int] | None] = []
        for path in self._files:
            try:
                stat = os.stat(path)
            except OSError:
                stamps.append(None)
            else:
                stamps.append((stat.st_mtime_ns, stat.st_size, stat.st_ino))
        return tuple(stamps)

    def _load(self) -> grpc.ServerCertificateConfiguration:
        chain = self._files[0].read_bytes()
        key = self._files[1].read_bytes()
        if b"-----BEGIN" not in chain or b"CERTIFICATE-----" not in chain:
            raise ValueError(f"{self._files[0]}: no PEM certificate")
        if b"PRIVATE KEY-----" not in key:
            raise ValueError(f"{self._files[1]}: no PEM private key")
        _check_pair(chain, key)
        ca = self._files[2].read_bytes() if len(self._files) == 3 else None
        self.loads += 1
        return grpc.ssl_server_certificate_configuration([(key, chain)], root_certificates=ca)


def _check_pair(chain: bytes, key: bytes) -> None:
    """Refuse a key that does not belong to the first certificate (a rotation caught half-way); skipped
    when the `cryptography` package is not installed (gRPC then fails those handshakes until the next
    change of the files)."""
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization
    except ImportError:  # pragma: no cover - the image may not carry it
        return

    certificate = x509.load_pem_x509_certificate(chain)
    private_key = serialization.load_pem_private_key(key, password=None)
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    encoding = serialization.Encoding.DER
    if certificate.public_key().public_bytes(encoding, public) != private_key.public_key().public_bytes(
        encoding, public
    ):
        raise ValueError("the private key does not match the certificate")
