"""The operator's list calls on a real kube-apiserver: paged, and without the per-instance results.

Retention, resync and the Halted look-up list ConfigRefresh objects; each can carry up to 1,000
per-instance results, so the operator reads them a page at a time and keeps only what those callers use.
"""

from __future__ import annotations

import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kubernetes
import pytest

from configrefresh_api.groupversion import GROUP, VERSION
from devstack.controlplane.plane import ControlPlane
from devstack.stack.kube import apply
from refresh_operator import kube
from refresh_operator.kube import Kube

OBJECTS = 7
INSTANCES = 40


def _refresh(index: int) -> dict[str, Any]:
    return {
        "apiVersion": "configrefresh.io/v1alpha1",
        "kind": "ConfigRefresh",
        "metadata": {"name": f"orders-v{index}", "labels": {"configrefresh.io/route": "orders"}},
        "spec": {"route": "orders", "parameter": {"name": "/orders/acme/db_url", "version": index}},
    }


def _status(index: int) -> dict[str, Any]:
    instances = [{"id": f"orders-{n}", "result": "Applied"} for n in range(INSTANCES)]
    return {"phase": "Succeeded", "targets": INSTANCES, "refreshed": INSTANCES, "instances": instances}


@pytest.fixture
def seeded(control_plane: ControlPlane, kube_namespace: str, monkeypatch: pytest.MonkeyPatch) -> str:
    for index in range(1, OBJECTS + 1):
        apply(control_plane, kube_namespace, _refresh(index))
        control_plane.kubectl(
            "patch",
            "-n",
            kube_namespace,
            "configrefresh",
            f"orders-v{index}",
            "--subresource=status",
            "--type=merge",
            "-p",
            json.dumps({"status": _status(index)}),
        )
    apply(control_plane, kube_namespace, {**_refresh(99), "metadata": {"name": "other-v99"}})
    # The client reads KUBECONFIG when it is imported; the operator's Kube loads the default location.
    monkeypatch.setattr(
        kubernetes.config.kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(control_plane.kubeconfig)
    )
    return kube_namespace


def test_a_list_pages_through_every_object_and_leaves_out_the_instances(seeded: str) -> None:
    objects = Kube().list(kube.REFRESHES, seeded, label_selector="configrefresh.io/route=orders", page_size=3)

    assert sorted(o["metadata"]["name"] for o in objects) == sorted(f"orders-v{i}" for i in range(1, 8))
    assert {o["status"]["phase"] for o in objects} == {"Succeeded"}
    assert {o["status"]["targets"] for o in objects} == {INSTANCES}
    assert all("instances" not in o["status"] for o in objects)
    assert all("managedFields" not in o["metadata"] for o in objects)


def test_one_page_carries_a_token_for_the_next_and_the_instances(seeded: str) -> None:
    first, token = Kube().list_page(kube.REFRESHES, seeded, limit=5)
    rest, last = Kube().list_page(kube.REFRESHES, seeded, limit=5, continue_token=token)

    assert (len(first), len(rest)) == (5, 3)
    assert token is not None
    assert last is None
    assert len(first[0]["status"]["instances"]) == INSTANCES


def _lists_at_once(kube_api: Kube, namespace: str, threads: int) -> None:
    barrier = threading.Barrier(threads)

    def one(_: int) -> None:
        barrier.wait()
        for _ in range(3):
            kube_api.list(kube.REFRESHES, namespace)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(one, range(threads)))


def test_as_many_threads_as_the_pool_keep_their_connections(
    seeded: str, caplog: pytest.LogCaptureFixture
) -> None:
    # The client's default keeps 5 connections per CPU; with more threads busy than that, every extra
    # connection is closed after its call (a TLS handshake per call) with this warning.
    with caplog.at_level(logging.WARNING, logger="urllib3.connectionpool"):
        _lists_at_once(Kube(pool=24), seeded, threads=24)

    assert [r.getMessage() for r in caplog.records if "pool is full" in r.getMessage()] == []


def _pod(name: str, app: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": app, "tier": "web"}},
        "spec": {"containers": [{"name": "main", "image": "example.invalid/none:1"}]},
    }


def test_pods_are_listed_page_by_page_as_plain_dicts(seeded: str, control_plane: ControlPlane) -> None:
    # podSync's reconcile list: the shape kopf hands to handlers (camelCase keys), not the client's models.
    for index in range(5):
        apply(control_plane, seeded, _pod(f"orders-{index}", "orders"))
    apply(control_plane, seeded, _pod("billing-0", "billing"))

    pods = Kube().list_pods(seeded, label_selector="app=orders,tier=web", page_size=2)

    assert sorted(p["metadata"]["name"] for p in pods) == [f"orders-{i}" for i in range(5)]
    assert {p["spec"]["containers"][0]["name"] for p in pods} == {"main"}
    assert all(isinstance(p["metadata"]["creationTimestamp"], str) for p in pods)


def test_status_is_applied_server_side_under_a_field_manager(seeded: str) -> None:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ConfigRefresh",
        "metadata": {"name": "orders-v1", "namespace": seeded},
        "status": {"latencyMs": 1234},
    }
    Kube().apply_status(kube.REFRESHES, seeded, "orders-v1", body, field_manager="kube-lists-test")

    found = Kube().get(kube.REFRESHES, seeded, "orders-v1")
    assert found is not None
    assert found["status"]["latencyMs"] == 1234
    assert found["status"]["phase"] == "Succeeded"  # fields of other managers stay
    managers = {entry["manager"] for entry in found["metadata"]["managedFields"]}
    assert "kube-lists-test" in managers


def _connections_opened(api: Kube) -> int:
    """New connections the client's pool has made so far (urllib3 counts them per host pool)."""
    pools = api._custom().api_client.rest_client.pool_manager.pools
    keys = pools.keys()  # the container refuses plain iteration
    return sum(int(pools[key].num_connections) for key in keys)


def test_patches_land_without_reading_the_object_back_and_keep_their_connection(seeded: str) -> None:
    # A patch's reply (the whole object, with every per-instance result) is dropped unparsed; the
    # connection still goes back to the pool, so one connection serves every call.
    api = Kube(pool=1)
    for n in range(6):
        api.patch_status(kube.REFRESHES, seeded, "orders-v2", {"latencyMs": n})
        api.patch(kube.REFRESHES, seeded, "orders-v2", {"metadata": {"labels": {"round": str(n)}}})
    with pytest.raises(kube.KubeError) as missing:
        api.patch_status(kube.REFRESHES, seeded, "no-such-refresh", {"latencyMs": 1})

    found = api.get(kube.REFRESHES, seeded, "orders-v2")
    assert found is not None
    assert found["status"]["latencyMs"] == 5
    assert len(found["status"]["instances"]) == INSTANCES  # a merge patch leaves the rest as it was
    assert found["metadata"]["labels"]["round"] == "5"
    assert missing.value.status == 404
    assert _connections_opened(api) == 1
