"""podSync is registered explicitly: nothing at import, its handlers on the registry it is given, and its
Kubernetes calls on the runner it is given (the operator's thread pool), never on the event loop."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from collections.abc import Mapping
from typing import Any

import kopf

from refresh_operator import kube
from refresh_operator.podsync import handlers
from refresh_operator.podsync.kube import KubeClient
from refresh_operator.podsync.model import FIELD_MANAGER
from refresh_operator.settings import load_settings


def handler_ids(registry: kopf.OperatorRegistry) -> set[str]:
    found: set[str] = set()
    for part in (registry._activities, registry._watching, registry._spawning, registry._changing):
        found.update(str(handler.id) for handler in part.get_all_handlers())
    return found


class RecordingKube(kube.Kube):
    """The operator's client with the two podSync calls recorded instead of sent."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any], str]] = []

    def list_pods(self, namespace: str, *, label_selector: str, page_size: int = 500) -> list[dict[str, Any]]:
        self.calls.append(("list_pods", (namespace,), {"label_selector": label_selector}, _thread()))
        return [{"metadata": {"name": "p"}}]

    def apply_status(
        self, plural: str, namespace: str, name: str, body: Mapping[str, Any], *, field_manager: str
    ) -> None:
        self.calls.append(
            ("apply_status", (plural, namespace, name), {"field_manager": field_manager}, _thread())
        )


def _thread() -> str:
    return threading.current_thread().name


IMPORT_ONLY = """
import sys, kopf
registry = kopf.get_default_registry()
parts = (registry._activities, registry._watching, registry._spawning, registry._changing)
def count(): return sum(len(list(part.get_all_handlers())) for part in parts)
before = count()  # kopf's own default login handlers
import refresh_operator.cli, refresh_operator.podsync.handlers
print(count() - before)
print("refresh_operator.podsync.standalone" in sys.modules)
"""


def test_importing_the_handlers_or_the_entry_point_registers_nothing() -> None:
    # A fresh interpreter: the test process's default registry may hold what other tests registered. A bad
    # setting proves nothing reads the settings at import.
    env = {**os.environ, "CONFIG_REFRESH_PODSYNC_INTERVAL_SECONDS": "not a number"}
    out = subprocess.run(
        [sys.executable, "-c", IMPORT_ONLY], env=env, capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    assert out == ["0", "False"]


def test_the_standalone_entry_registers_podsync_on_the_default_registry() -> None:
    script = IMPORT_ONLY.replace("refresh_operator.cli,", "refresh_operator.podsync.standalone,")
    # The entry module reads the operator's settings, which need a queue URL and a region.
    env = {**os.environ, "CONFIG_REFRESH_QUEUE_URL": "http://127.0.0.1/q", "AWS_REGION": "us-east-1"}
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    assert out == ["4", "True"]


def test_register_adds_the_podsync_handlers_to_the_given_registry() -> None:
    registry = kopf.OperatorRegistry()
    handlers.register(
        registry,
        load_settings({"CONFIG_REFRESH_QUEUE_URL": "http://127.0.0.1/q", "AWS_REGION": "us-east-1"}),
        kube_api=RecordingKube(),
        run=asyncio.to_thread,
    )
    assert handler_ids(registry) == {
        "podsync-startup",
        "podsync-route-index",
        "podsync-pods",
        "podsync-reconcile",
    }
    assert handler_ids(kopf.OperatorRegistry()) == set()


async def test_kubernetes_calls_run_on_the_given_runner_off_the_loop() -> None:
    api = RecordingKube()
    runs: list[str] = []

    async def run(fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        runs.append(fn.__name__)
        return await asyncio.to_thread(fn, *args, **kwargs)

    client = KubeClient(api, run)
    pods = await client.list_pods("shop", {"b": "2", "a": "1"})
    await client.apply_route_status("shop", "orders", {"status": {}})
    assert pods == [{"metadata": {"name": "p"}}]
    assert runs == ["list_pods", "apply_status"]
    loop_thread = _thread()
    assert [call[0] for call in api.calls] == ["list_pods", "apply_status"]
    assert all(call[3] != loop_thread for call in api.calls)
    assert api.calls[0][2] == {"label_selector": "a=1,b=2"}
    assert api.calls[1][1:3] == (("configroutes", "shop", "orders"), {"field_manager": FIELD_MANAGER})
