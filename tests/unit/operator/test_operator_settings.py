"""The operator's one settings object: core and podSync fields, defaults, the environment, named errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from refresh_operator.settings import OperatorSettings, SettingsError, env_key, load_settings

BASE = {"CONFIG_REFRESH_QUEUE_URL": "http://127.0.0.1:1/queue", "AWS_REGION": "us-east-1"}


def test_podsync_reads_its_interval_from_the_same_object() -> None:
    assert load_settings(BASE).podsync_interval_seconds == 60.0
    settings = load_settings({**BASE, "CONFIG_REFRESH_PODSYNC_INTERVAL_SECONDS": "2.5"})
    assert settings.podsync_interval_seconds == 2.5


@pytest.mark.parametrize("raw", ["soon", "0", "-1", "86401"])
def test_a_bad_podsync_interval_is_named(raw: str) -> None:
    with pytest.raises(SettingsError, match="CONFIG_REFRESH_PODSYNC_INTERVAL_SECONDS"):
        load_settings({**BASE, "CONFIG_REFRESH_PODSYNC_INTERVAL_SECONDS": raw})


def test_the_channel_idle_time_defaults_to_ten_minutes_and_is_bounded() -> None:
    assert load_settings(BASE).channel_idle_seconds == 600.0
    assert load_settings({**BASE, "CONFIG_REFRESH_CHANNEL_IDLE_SECONDS": "5"}).channel_idle_seconds == 5.0
    for raw in ("0.5", "86401", "never"):
        with pytest.raises(SettingsError, match="CONFIG_REFRESH_CHANNEL_IDLE_SECONDS"):
            load_settings({**BASE, "CONFIG_REFRESH_CHANNEL_IDLE_SECONDS": raw})


def test_the_warm_channel_bound_defaults_to_two_thousand_and_zero_lifts_it() -> None:
    assert load_settings(BASE).max_channels == 2000
    assert load_settings({**BASE, "CONFIG_REFRESH_MAX_CHANNELS": "0"}).max_channels == 0
    for raw in ("-1", "many"):
        with pytest.raises(SettingsError, match="CONFIG_REFRESH_MAX_CHANNELS"):
            load_settings({**BASE, "CONFIG_REFRESH_MAX_CHANNELS": raw})


def test_endpoint_and_region_follow_the_aws_sdk_order() -> None:
    both = {"CONFIG_REFRESH_AWS_ENDPOINT_URL": "http://127.0.0.1:2", "AWS_ENDPOINT_URL": "http://127.0.0.1:1"}
    assert load_settings({**BASE, **both}).aws_endpoint_url == "http://127.0.0.1:2"
    assert load_settings({**BASE, "AWS_ENDPOINT_URL": "http://127.0.0.1:1"}).aws_endpoint_url == (
        "http://127.0.0.1:1"
    )
    fallback = {
        "CONFIG_REFRESH_QUEUE_URL": BASE["CONFIG_REFRESH_QUEUE_URL"],
        "AWS_DEFAULT_REGION": "eu-west-1",
    }
    assert load_settings(fallback).region == "eu-west-1"
    assert load_settings({**fallback, "AWS_REGION": "us-west-2"}).region == "us-west-2"


def test_an_empty_variable_means_the_default() -> None:
    settings = load_settings({**BASE, "CONFIG_REFRESH_MAX_MESSAGES": "", "AWS_ENDPOINT_URL": " "})
    assert settings.max_messages == 10
    assert settings.aws_endpoint_url is None


def test_pod_id_comes_from_the_downward_api_else_the_hostname() -> None:
    assert load_settings({**BASE, "POD_ID": "operator-7f9-abcde"}).pod_id == "operator-7f9-abcde"
    assert load_settings(BASE).pod_id


def test_the_process_environment_is_read_when_no_mapping_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in BASE.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("CONFIG_REFRESH_INSTANCES_CAP", "7")
    assert load_settings().instances_cap == 7
    monkeypatch.setenv("CONFIG_REFRESH_INSTANCES_CAP", "many")
    with pytest.raises(SettingsError, match="CONFIG_REFRESH_INSTANCES_CAP"):
        load_settings()


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"CONFIG_REFRESH_QUEUE_URL": BASE["CONFIG_REFRESH_QUEUE_URL"]}, "AWS_REGION"),
        ({"AWS_REGION": "us-east-1"}, "CONFIG_REFRESH_QUEUE_URL"),
        ({**BASE, "CONFIG_REFRESH_SERVICE_ACCOUNT_NAME": "op"}, "CONFIG_REFRESH_SERVICE_ACCOUNT_NAMESPACE"),
        ({**BASE, "AWS_ENDPOINT_URL": "localhost:5000"}, "AWS_ENDPOINT_URL"),
        ({**BASE, "CONFIG_REFRESH_POD_SYNC": "perhaps"}, "CONFIG_REFRESH_POD_SYNC"),
    ],
)
def test_a_missing_or_bad_key_is_named(env: dict[str, str], key: str) -> None:
    with pytest.raises(SettingsError, match=key):
        load_settings(env)


def test_certificate_and_key_go_together(tmp_path: Path) -> None:
    pem = tmp_path / "cert.pem"
    pem.write_text("x")
    with pytest.raises(SettingsError, match="CONFIG_REFRESH_TLS_KEY_FILE"):
        load_settings({**BASE, "CONFIG_REFRESH_TLS_CERT_FILE": str(pem)})
    both = {"CONFIG_REFRESH_TLS_CERT_FILE": str(pem), "CONFIG_REFRESH_TLS_KEY_FILE": str(pem)}
    assert load_settings({**BASE, **both}).tls_key_file == pem


def test_every_field_has_one_environment_variable() -> None:
    keys = {
        env_key(name) if field.validation_alias is None else str(field.validation_alias)
        for name, field in OperatorSettings.model_fields.items()
    }
    assert len(keys) == len(OperatorSettings.model_fields)
    assert env_key("max_messages") == "CONFIG_REFRESH_MAX_MESSAGES"


def test_the_docs_list_every_variable() -> None:
    docs = (Path(__file__).resolve().parents[3] / "docs" / "operator.md").read_text()
    missing = [
        env_key(name)
        for name, field in OperatorSettings.model_fields.items()
        if field.validation_alias is None and f"`{env_key(name)}`" not in docs
    ]
    assert not missing


def test_a_missing_key_says_what_it_is_for() -> None:
    with pytest.raises(SettingsError, match=r"AWS_REGION is required: .*AWS_DEFAULT_REGION"):
        load_settings({"CONFIG_REFRESH_QUEUE_URL": BASE["CONFIG_REFRESH_QUEUE_URL"]})
    with pytest.raises(SettingsError, match="CONFIG_REFRESH_QUEUE_URL is required: the SQS queue"):
        load_settings({"AWS_REGION": "us-east-1"})
