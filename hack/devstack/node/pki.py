"""Client and serving certificates for the one-node cluster's components, from the control plane's CA.

The control plane's PKI (devstack.controlplane.pki) has one throwaway CA; the node's components get
certificates from it with the identities Kubernetes' bootstrap RBAC and the Node authorizer expect:
`system:kube-scheduler`, `system:kube-controller-manager`, and `system:node:<name>` in `system:nodes` for
the kubelet (plus a serving certificate for the kubelet's own port, so the API server can reach it for
`kubectl logs`). Nothing is bootstrapped through CSRs: the certificates are written before the kubelet
starts, as kubeadm does for its control-plane components.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from devstack.controlplane.pki import Pki, _cert, _key_pem, _write


@dataclass(frozen=True)
class KeyPair:
    cert: Path
    key: Path


def _ca(pki: Pki) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    ca = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TypeError(f"{pki.ca_key}: expected an EC key")
    return ca, key


def issue(
    pki: Pki,
    name: str,
    *,
    common_name: str,
    organization: str | None = None,
    server_ips: tuple[str, ...] = (),
) -> KeyPair:
    """A key and a certificate signed by the control plane's CA, in the PKI's directory as `name`.crt/.key.

    With `server_ips` the certificate is a serving one for those addresses; otherwise a client one.
    """
    ca, ca_key = _ca(pki)
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    key = ec.generate_private_key(ec.SECP256R1())
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server_ips else ExtendedKeyUsageOID.CLIENT_AUTH
    cert = _cert(
        subject=x509.Name(attributes),
        key=key,
        issuer=ca.subject,
        issuer_key=ca_key,
        ca=False,
        usages=[usage],
        sans=[x509.IPAddress(ipaddress.ip_address(ip)) for ip in server_ips],
    )
    directory = pki.ca_cert.parent
    return KeyPair(
        cert=_write(directory / f"{name}.crt", cert.public_bytes(serialization.Encoding.PEM)),
        key=_write(directory / f"{name}.key", _key_pem(key), private=True),
    )
