"""Settings: flags over environment over defaults; a bad value fails at start naming its key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from config_service.settings import Settings, SettingsError, env_name, flag_name, is_loopback_host


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
    for name in Settings.model_fields:
        assert flag_name(name) in shown, name
        assert env_name(name) in flat, name


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
    docs = (Path(__file__).resolve().parents[3] / "docs" / "config-service.md").read_text()
    for name in Settings.model_fields:
        assert f"`{env_name(name)}`" in docs, name
        assert f"`{flag_name(name)}`" in docs, name


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


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.3.200", True),
        ("127.255.255.254", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.1.2.3", False),
        ("config.example", False),
    ],
)
def test_the_whole_127_block_ipv6_loopback_and_localhost_are_loopback(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


def test_the_config_api_on_the_network_needs_authentication_or_the_named_opt_out(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="CONFIG_SERVICE_INSECURE_CONFIG_API") as raised:
        Settings(insecure_refresh=True, host="0.0.0.0")
    assert "--insecure-config-api" in str(raised.value)
    with pytest.raises(SettingsError, match="CONFIG_SERVICE_INSECURE_CONFIG_API"):
        Settings(insecure_refresh=True, config_host="10.0.0.5")
    # Loopback (sidecar) mode, anywhere in 127.0.0.0/8, needs nothing; the refresh port may still be public.
    assert Settings(insecure_refresh=True, host="0.0.0.0", config_host="127.0.0.1").config_loopback
    assert Settings(insecure_refresh=True, host="127.0.0.42").config_auth_modes == ()
    opted_out = Settings(insecure_refresh=True, host="0.0.0.0", insecure_config_api=True)
    assert not opted_out.config_loopback
    token = tmp_path / "tokens"
    token.write_text("t\n")
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    secured = Settings(
        insecure_refresh=True,
        host="0.0.0.0",
        config_token_file=token,
        config_tls_cert_file=cert,
        config_tls_key_file=cert,
    )
    assert secured.config_auth_modes == ("token",)


def test_bearer_tokens_on_the_network_need_tls_or_the_named_opt_out(tmp_path: Path) -> None:
    token = tmp_path / "tokens"
    token.write_text("t\n")
    with pytest.raises(SettingsError, match="CONFIG_SERVICE_CONFIG_TLS_CERT_FILE") as raised:
        Settings(insecure_refresh=True, host="0.0.0.0", config_token_file=token)
    assert "--insecure-plaintext-tokens" in str(raised.value)
    with pytest.raises(SettingsError, match="CONFIG_SERVICE_REFRESH_TLS_CERT_FILE"):
        Settings(host="0.0.0.0", config_host="127.0.0.1", refresh_token_file=token)
    assert Settings(host="127.0.0.9", refresh_token_file=token, config_token_file=token).auth_modes == (
        "token",
    )
    assert Settings(
        host="0.0.0.0", refresh_token_file=token, config_token_file=token, insecure_plaintext_tokens=True
    ).insecure_plaintext_tokens


def test_serviceaccount_readers_need_the_audience_and_mtls_readers_need_a_certificate(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="CONFIG_SERVICE_TOKENREVIEW_AUDIENCE"):
        Settings(insecure_refresh=True, config_tokenreview_allowed_groups=("system:serviceaccounts:apps",))
    settings = Settings(
        insecure_refresh=True,
        tokenreview_audience="configrefresh.io/ns/svc",
        config_tokenreview_allowed_groups=("system:serviceaccounts:apps",),
    )
    assert settings.config_auth_modes == ("serviceaccount",)
    assert settings.auth_modes == (), "the audience alone does not authenticate RefreshService callers"
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    with pytest.raises(SettingsError, match="CONFIG_SERVICE_CONFIG_TLS_CERT_FILE"):
        Settings(insecure_refresh=True, config_client_ca_file=ca, config_allowed_identities=("orders",))
    with pytest.raises(SettingsError, match="CONFIG_SERVICE_TOKENREVIEW_RATE"):
        Settings(insecure_refresh=True, tokenreview_rate=0)


def test_flags_are_generated_from_the_fields() -> None:
    settings = Settings.from_sources(
        [
            "--insecure-refresh",
            "--no-metrics-enabled",
            "--prefixes",
            "/a/,/b/",
            "--cloudmap-attributes",
            "zone=a",
            "--ttl-jitter",
            "0.2",
        ],
        {"CONFIG_SERVICE_METRICS_ENABLED": "true"},
    )
    assert settings.metrics_enabled is False
    assert settings.prefixes == ("/a/", "/b/")
    assert dict(settings.cloudmap_attributes) == {"zone": "a"}
    assert settings.ttl_jitter == 0.2


def test_a_given_environment_replaces_the_process_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONFIG_SERVICE_REFRESH_PORT", "7001")
    monkeypatch.setenv("CONFIG_SERVICE_INSECURE_REFRESH", "true")
    assert Settings.from_sources([], None).refresh_port == 7001
    assert Settings.from_sources([], {"CONFIG_SERVICE_INSECURE_REFRESH": "1"}).refresh_port == 50051


def test_region_and_namespace_fall_back_to_the_platform_variables() -> None:
    base = {"CONFIG_SERVICE_INSECURE_REFRESH": "1"}
    assert Settings.from_sources([], base).aws_region == "us-east-1"
    platform = {**base, "AWS_DEFAULT_REGION": "eu-west-1", "POD_NAMESPACE": "apps"}
    assert Settings.from_sources([], platform).aws_region == "eu-west-1"
    assert Settings.from_sources([], platform).pod_namespace == "apps"
    own = {**platform, "AWS_REGION": "us-west-2", "CONFIG_SERVICE_AWS_REGION": "ap-south-1"}
    assert Settings.from_sources([], own).aws_region == "ap-south-1"
    assert Settings.from_sources(["--aws-region", "sa-east-1"], own).aws_region == "sa-east-1"


def test_a_malformed_map_names_its_key() -> None:
    with pytest.raises(SettingsError, match="CONFIG_SERVICE_CLOUDMAP_ATTRIBUTES"):
        Settings.from_sources(["--insecure-refresh"], {"CONFIG_SERVICE_CLOUDMAP_ATTRIBUTES": "novalue"})
    with pytest.raises(SettingsError, match="--ttl-jitter"):
        Settings.from_sources(["--insecure-refresh", "--ttl-jitter", "1.5"], {})
