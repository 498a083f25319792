"""The one-node cluster's parts that run without root: certificates, the pause image, API server flags."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from devstack.controlplane import build as controlplane_build
from devstack.controlplane import pki as controlplane_pki
from devstack.node import images as node_images
from devstack.node import pki as node_pki
from devstack.node.cluster import BRIDGE_IP, NodeControlPlane


def _verify(cert: x509.Certificate, ca: x509.Certificate) -> None:
    assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey)
    cert.verify_directly_issued_by(ca)  # raises when the CA did not sign it


def test_node_certificates_come_from_the_control_plane_ca_with_the_identities_kubernetes_expects(
    tmp_path: Path,
) -> None:
    pki = controlplane_pki.generate(tmp_path, extra_ips=(BRIDGE_IP,))
    ca = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    serving = x509.load_pem_x509_certificate(pki.serving_cert.read_bytes())
    sans = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert BRIDGE_IP in {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)}

    kubelet = node_pki.issue(pki, "kubelet", common_name="system:node:n1", organization="system:nodes")
    cert = x509.load_pem_x509_certificate(kubelet.cert.read_bytes())
    _verify(cert, ca)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "system:node:n1"
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "system:nodes"
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert kubelet.key.stat().st_mode & 0o077 == 0, "the private key is readable by its owner only"

    served = node_pki.issue(pki, "kubelet-serving", common_name="n1", server_ips=(BRIDGE_IP,))
    cert = x509.load_pem_x509_certificate(served.cert.read_bytes())
    _verify(cert, ca)
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH
    ]
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == [BRIDGE_IP]


def test_the_pause_image_is_a_docker_archive_whose_layer_matches_its_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    archive = node_images.pause_archive()
    assert archive.is_relative_to(tmp_path)
    with tarfile.open(archive) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
        [entry] = manifest
        assert entry["RepoTags"] == [node_images.PAUSE_IMAGE]
        config = json.loads(tar.extractfile(entry["Config"]).read())  # type: ignore[union-attr]
        layer = tar.extractfile(entry["Layers"][0]).read()  # type: ignore[union-attr]
    assert config["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(layer).hexdigest()]
    assert config["config"]["Entrypoint"] == ["/pause"]
    with tarfile.open(fileobj=io.BytesIO(layer)) as rootfs:
        pause = rootfs.getmember("pause")
    assert pause.mode == 0o755
    assert pause.size > 0
    assert node_images.pause_archive() == archive, "built once, then cached"


def test_the_node_api_server_serves_on_the_bridge_with_the_node_authorizer_and_sa_admission(
    tmp_path: Path,
) -> None:
    bins = controlplane_build.binaries(tmp_path)
    plane = NodeControlPlane(binaries=bins, workdir=tmp_path / "plane", detached=True)
    argv = plane._apiserver_argv()
    assert f"--bind-address={BRIDGE_IP}" in argv
    assert f"--advertise-address={BRIDGE_IP}" in argv
    assert "--authorization-mode=Node,RBAC" in argv
    assert "--enable-admission-plugins=NodeRestriction" in argv
    assert not [a for a in argv if "127.0.0.1" in a and not a.startswith("--etcd-servers")]
    assert "--disable-admission-plugins=ServiceAccount" not in argv
    assert "--endpoint-reconciler-type=none" not in argv
    assert plane.server.startswith(f"https://{BRIDGE_IP}:")
    assert BRIDGE_IP in plane.kubeconfig.read_text()
