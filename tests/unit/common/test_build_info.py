"""Both programs export `*_build_info{version, python} 1`, the version read from the installed metadata."""

from __future__ import annotations

import platform
from importlib import metadata

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from config_service.cache import ConfigCache
from config_service.metrics import Metrics
from refresh_operator import metrics as operator_metrics

pytestmark = pytest.mark.unit


def build_info(registry: CollectorRegistry, name: str) -> dict[str, str]:
    text = generate_latest(registry).decode()
    samples = [s for family in text_string_to_metric_families(text) for s in family.samples if s.name == name]
    assert len(samples) == 1, samples
    assert samples[0].value == 1
    return dict(samples[0].labels)


def test_operator_build_info() -> None:
    assert operator_metrics.BUILD_INFO is not None
    labels = build_info(REGISTRY, "config_refresh_build_info")
    assert labels == {"version": metadata.version("config-refresh"), "python": platform.python_version()}


def test_config_service_build_info() -> None:
    labels = build_info(Metrics(ConfigCache()).registry, "config_service_build_info")
    assert labels == {"version": metadata.version("config-refresh"), "python": platform.python_version()}
