"""devstack.services.readers: the release's CA is found among rendered objects and among listed Secrets."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from devstack.services.readers import release_ca

PEM = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def secret(data: dict[str, bytes], **fields: str) -> dict[str, Any]:
    return {**fields, "data": {key: base64.b64encode(value).decode() for key, value in data.items()}}


def test_the_first_secret_with_a_ca_is_the_releases_whether_rendered_or_listed() -> None:
    rendered: list[dict[str, Any]] = [
        {"kind": "ConfigMap", "data": {"ca.crt": "bm90IGEgc2VjcmV0"}},
        secret({"token": b"x"}, kind="Secret"),
        secret({"ca.crt": PEM, "tls.crt": b"leaf"}, kind="Secret"),
    ]
    assert release_ca(rendered) == PEM
    listed = [secret({"ca.crt": PEM}, type="kubernetes.io/tls")]  # list items may carry no kind
    assert release_ca(listed) == PEM


def test_no_ca_is_an_error_not_an_empty_trust_store() -> None:
    with pytest.raises(LookupError):
        release_ca([secret({"tls.crt": b"leaf"}, kind="Secret")])
