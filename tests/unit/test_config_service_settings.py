"""Settings: flags over environment over defaults; a bad value fails at start naming its key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from config_service.settings import FIELDS, Settings, SettingsError, env_name, flag_name


def test_environment_and_flags_build_one_typed_object() -> None:
    settings = Settings.from_sources(
        ["--refresh-port", "6001", "--insecure-refresh"],
        {
            "CONFIG_SERVICE_REFRESH_PORT": "5001",
            "CONFIG_SERVICE_CONFIG_PORT": "5002",
            "CONFIG_SERVICE_PREFIXES": "/a/, /b/",
            "CONFIG_SERVICE_TTL_SECONDS": "0",
            "CONFIG_SERVICE_CLOUDMAP_ATTRIBUTES": "tenant=acme,zone=a",
        },
    )
    assert settings.refresh_port == 6001
    assert settings.config_port == 5002
    assert settings.prefixes == ("/a/", "/b/")
    assert settings.ttl_seconds == 0.0
    assert settings.insecure_refresh is True
    assert dict(settings.cloudmap_attributes) == {"tenant": "acme", "zone": "a"}


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"CONFIG_SERVICE_REFRESH_PORT": "abc"}, "CONFIG_SERVICE_REFRESH_PORT"),
        ({"CONFIG_SERVICE_TTL_SECONDS": "soon"}, "CONFIG_SERVICE_TTL_SECONDS"),
        ({"CONFIG_SERVICE_METRICS_ENABLED": "perhaps"}, "CONFIG_SERVICE_METRICS_ENABLED"),
        ({"CONFIG_SERVICE_PREFIXES": "relative/"}, "CONFIG_SERVICE_PREFIXES"),
        ({"CONFIG_SERVICE_CONFIG_PORT": "70000"}, "CONFIG_SERVICE_CONFIG_PORT"),
        ({"CONFIG_SERVICE_REFRESH_TOKEN_FILE": "/nonexistent/token"}, "CONFIG_SERVICE_REFRESH_TOKEN_FILE"),
    ],
)
def test_a_malformed_value_names_its_key(env: dict[str, str], key: str) -> None:
    with pytest.raises(SettingsError, match=key):
        Settings.from_sources(["--insecure-refresh"], env)


def test_a_malformed_flag_names_the_flag() -> None:
    with pytest.raises(SettingsError, match="--refresh-port"):
        Settings.from_sources(["--refresh-port", "x", "--insecure-refresh"], {})


def test_refuses_to_start_without_refresh_authentication() -> None:
    with pytest.raises(SettingsError, match="insecure-refresh"):
        Settings.from_sources([], {})


def test_mutual_tls_needs_an_allow_list(tmp_path: Path) -> None:
    pem = tmp_path / "x.pem"
    pem.write_text("not checked here")
    with pytest.raises(SettingsError, match="CONFIG_SERVICE_REFRESH_ALLOWED_IDENTITIES"):
        Settings(refresh_tls_cert_file=pem, refresh_tls_key_file=pem, refresh_client_ca_file=pem)


def test_help_documents_every_setting() -> None:
    shown = subprocess.run(
        [sys.executable, "-m", "config_service", "--help"], capture_output=True, text=True, check=True
    ).stdout
    flat = " ".join(shown.split())
    for field in FIELDS:
        assert flag_name(field) in shown, field.name
        assert env_name(field) in flat, field.name


def test_the_command_line_reports_a_bad_setting_and_exits_2() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "config_service"],
        capture_output=True,
        text=True,
        env={"CONFIG_SERVICE_REFRESH_PORT": "nope", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 2
    assert "CONFIG_SERVICE_REFRESH_PORT" in result.stderr


def test_the_docs_list_every_setting() -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "config-service.md").read_text()
    for field in FIELDS:
        assert f"`{env_name(field)}`" in docs, field.name
        assert f"`{flag_name(field)}`" in docs, field.name


def test_an_empty_variable_means_the_default() -> None:
    settings = Settings.from_sources(
        [],
        {
            "CONFIG_SERVICE_INSTANCE_ID": "",
            "CONFIG_SERVICE_AWS_ENDPOINT_URL": "",
            "CONFIG_SERVICE_INSECURE_REFRESH": "1",
        },
    )
    assert settings.instance_id
    assert settings.aws_endpoint_url is None
