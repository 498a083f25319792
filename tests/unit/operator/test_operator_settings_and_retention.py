"""Settings fail fast naming the bad key; retention deletes only finished rollouts beyond age or count."""

from __future__ import annotations

import asyncio
import datetime
import threading
import time
from typing import Any

import pytest
from prometheus_client import REGISTRY

from refresh_operator.aws import Blocking
from refresh_operator.kube import KubeError
from refresh_operator.leadership import Leadership, Peering
from refresh_operator.retention import DELETES_AT_ONCE, expired, run, sweep
from refresh_operator.settings import SettingsError, load_settings

BASE = {"CONFIG_REFRESH_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/1/q", "AWS_REGION": "us-east-1"}


def test_defaults() -> None:
    settings = load_settings(BASE)
    assert settings.max_messages == 10
    assert settings.wait_time_seconds == 20
    assert settings.retention_keep == 10
    assert settings.retention_seconds == 7 * 24 * 3600
    assert settings.aws_endpoint_url is None
    assert settings.aws_retry_mode == "standard"


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"CONFIG_REFRESH_QUEUE_URL": ""}, "CONFIG_REFRESH_QUEUE_URL"),
        ({"CONFIG_REFRESH_QUEUE_URL": "queue"}, "CONFIG_REFRESH_QUEUE_URL"),
        ({"AWS_REGION": ""}, "AWS_REGION"),
        ({"CONFIG_REFRESH_MAX_MESSAGES": "11"}, "CONFIG_REFRESH_MAX_MESSAGES"),
        ({"CONFIG_REFRESH_METRICS_PORT": "http"}, "CONFIG_REFRESH_METRICS_PORT"),
        ({"CONFIG_REFRESH_AWS_RETRY_MODE": "legacy"}, "CONFIG_REFRESH_AWS_RETRY_MODE"),
        ({"CONFIG_REFRESH_TLS_CA_FILE": "/nonexistent/ca.pem"}, "CONFIG_REFRESH_TLS_CA_FILE"),
        ({"CONFIG_REFRESH_RETENTION_KEEP": "0"}, "CONFIG_REFRESH_RETENTION_KEEP"),
        ({"CONFIG_REFRESH_AWS_ENDPOINT_URL": "localhost:5000"}, "CONFIG_REFRESH_AWS_ENDPOINT_URL"),
    ],
)
def test_a_bad_setting_is_named(overrides: dict[str, str], key: str) -> None:
    with pytest.raises(SettingsError, match=key):
        load_settings({**BASE, **overrides})


NOW = datetime.datetime(2026, 11, 26, 12, 0, tzinfo=datetime.UTC)


def refresh(
    name: str, *, parameter: str = "/p", phase: str = "Succeeded", hours_ago: float = 1
) -> dict[str, Any]:
    completed = (NOW - datetime.timedelta(hours=hours_ago)).isoformat().replace("+00:00", "Z")
    return {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "annotations": {"configrefresh.io/parameter-name": parameter},
        },
        "spec": {"route": "r", "parameter": {"name": parameter}},
        "status": {"phase": phase, "completedAt": completed},
    }


def test_only_the_newest_n_finished_rollouts_per_parameter_are_kept() -> None:
    objects = [refresh(f"p-{i}", hours_ago=i) for i in range(5)] + [
        refresh("q-0", parameter="/q", hours_ago=9)
    ]
    assert expired(objects, now=NOW, max_age_seconds=0, keep=3) == [("ns", "p-3"), ("ns", "p-4")]


def test_old_finished_rollouts_go_but_running_ones_stay() -> None:
    objects = [
        refresh("old", hours_ago=200),
        refresh("running", hours_ago=200, phase="InProgress"),
        refresh("fresh", hours_ago=1),
    ]
    assert expired(objects, now=NOW, max_age_seconds=7 * 24 * 3600, keep=10) == [("ns", "old")]


class SlowKube:
    """Lists the given objects; each delete takes a moment and records how many ran at once."""

    def __init__(self, objects: list[dict[str, Any]], *, refuse: str | None = None) -> None:
        self.objects = objects
        self.refuse = refuse
        self.deleted: list[str] = []
        self.running = 0
        self.most_at_once = 0
        self.lock = threading.Lock()

    def list(self, plural: str, namespace: str | None) -> list[dict[str, Any]]:
        return self.objects

    def delete(self, plural: str, namespace: str, name: str) -> None:
        with self.lock:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        time.sleep(0.05)
        with self.lock:
            self.running -= 1
            if name == self.refuse:
                raise KubeError("delete configrefreshes: HTTP 500", status=500)
            self.deleted.append(name)


def _sweep(kube_api: SlowKube) -> int:
    async def go() -> int:
        blocking = Blocking(threads=16)
        try:
            return await sweep(
                kube_api=kube_api,  # type: ignore[arg-type]
                blocking=blocking,
                namespaces=["ns"],
                max_age_seconds=0,
                keep=1,
            )
        finally:
            blocking.shutdown()

    return asyncio.run(go())


def test_a_sweep_deletes_a_few_at_a_time() -> None:
    kube_api = SlowKube([refresh(f"p-{i}", hours_ago=i) for i in range(13)])

    assert _sweep(kube_api) == 12
    assert sorted(kube_api.deleted) == sorted(f"p-{i}" for i in range(1, 13))
    assert kube_api.most_at_once == DELETES_AT_ONCE


def test_a_failed_delete_fails_the_sweep_after_the_others_are_done() -> None:
    kube_api = SlowKube([refresh(f"p-{i}", hours_ago=i) for i in range(6)], refuse="p-2")

    with pytest.raises(KubeError, match="HTTP 500"):
        _sweep(kube_api)
    assert sorted(kube_api.deleted) == ["p-1", "p-3", "p-4", "p-5"]


def test_retention_sweeps_only_while_this_replica_is_the_active_one() -> None:
    kube_api = SlowKube([refresh(f"p-{i}", hours_ago=i) for i in range(3)])
    answers = [False, False, True]

    async def read(_: Peering) -> dict[str, Any]:
        now = datetime.datetime.now(datetime.UTC).isoformat()
        peers = {"me": {"priority": 1, "lifetime": 60, "lastseen": now}}
        if not (answers.pop(0) if answers else True):
            peers["leader"] = {"priority": 2, "lifetime": 60, "lastseen": now}
        return {"status": peers}

    def skipped() -> float:
        sample = REGISTRY.get_sample_value(
            "config_refresh_background_passes_skipped_total", {"loop": "retention"}
        )
        return sample or 0.0

    async def go() -> None:
        blocking = Blocking(threads=4)
        stop = asyncio.Event()
        task = asyncio.create_task(
            run(
                kube_api=kube_api,  # type: ignore[arg-type]
                blocking=blocking,
                namespaces=["ns"],
                max_age_seconds=0,
                keep=1,
                interval=0.05,
                stop=stop,
                leadership=Leadership(Peering(name="op", priority=1, namespace="ns"), read_peering=read),
            )
        )
        try:
            deadline = time.monotonic() + 30
            while len(kube_api.deleted) < 2:
                assert time.monotonic() < deadline, "the active replica never swept"
                await asyncio.sleep(0.02)
        finally:
            stop.set()
            await asyncio.wait_for(task, timeout=10)
            blocking.shutdown()

    before = skipped()
    asyncio.run(go())
    assert skipped() - before == 2, "the two standby rounds are skipped, not swept"
    assert set(kube_api.deleted) == {"p-1", "p-2"}
