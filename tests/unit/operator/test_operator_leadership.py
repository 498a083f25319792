"""kopf's peering rule as the resync and retention loops apply it: which replica is the active one."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Mapping
from typing import Any

from refresh_operator.leadership import Leadership, Peering, is_active, peerings_for

NOW = datetime.datetime(2026, 12, 5, 12, 0, 0, tzinfo=datetime.UTC)


def _peer(priority: int, *, seen_ago: float = 1.0, lifetime: int = 60) -> dict[str, Any]:
    lastseen = NOW - datetime.timedelta(seconds=seen_ago)
    return {"priority": priority, "lifetime": lifetime, "lastseen": lastseen.isoformat()}


def test_the_highest_live_priority_is_active_and_the_others_stand_by() -> None:
    status = {"pod-a": _peer(100), "pod-b": _peer(7)}
    assert is_active(status, priority=100, now=NOW)
    assert not is_active(status, priority=7, now=NOW)


def test_a_dead_peer_of_higher_priority_no_longer_holds_the_lead() -> None:
    status = {"pod-a": _peer(100, seen_ago=61), "pod-b": _peer(7)}
    assert is_active(status, priority=7, now=NOW), "pod-a's lastseen + lifetime has passed"
    assert not is_active({"pod-a": _peer(100, seen_ago=59), "pod-b": _peer(7)}, priority=7, now=NOW)


def test_two_live_peers_of_the_same_priority_both_stand_by_as_kopf_pauses_both() -> None:
    assert not is_active({"pod-a": _peer(5), "pod-b": _peer(5)}, priority=5, now=NOW)


def test_a_replica_without_its_own_entry_yet_is_not_active() -> None:
    assert not is_active({}, priority=5, now=NOW)
    assert not is_active({"pod-b": _peer(1)}, priority=5, now=NOW)


def test_malformed_entries_are_ignored_not_fatal() -> None:
    status: dict[str, Any] = {
        "pod-a": _peer(5),
        "junk": "not a mapping",
        "no-time": {"priority": 9},
        "bad-prio": {"priority": "x", "lastseen": NOW.isoformat()},
        "zulu": {"priority": 1, "lifetime": 60, "lastseen": "2026-12-05T11:59:59Z"},
    }
    assert is_active(status, priority=5, now=NOW)


def _leadership(peering: Peering, reads: list[Mapping[str, Any] | Exception]) -> Leadership:
    async def read(_: Peering) -> Mapping[str, Any] | None:
        answer = reads.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return Leadership(peering, read_peering=read, clock=lambda: NOW)


def test_a_standalone_operator_is_always_active_without_reading_anything() -> None:
    leadership = _leadership(Peering(name=None), [])
    assert asyncio.run(leadership.is_active())


def test_leadership_follows_the_peering_object_and_an_unreadable_one_means_standby() -> None:
    peering = Peering(name="config-refresh-operator", priority=7, namespace="config-refresh")
    reads: list[Mapping[str, Any] | Exception] = [
        {"status": {"pod-a": _peer(100), "pod-b": _peer(7)}},
        {"status": {"pod-a": _peer(100, seen_ago=120), "pod-b": _peer(7)}},
        RuntimeError("HTTP 503"),
        {"status": {"pod-b": _peer(7)}},
    ]
    leadership = _leadership(peering, reads)

    async def answers() -> list[bool]:
        return [await leadership.is_active() for _ in range(4)]

    assert asyncio.run(answers()) == [False, True, False, True]


def test_the_peering_kind_follows_the_scope() -> None:
    assert Peering(name="x", clusterwide=True).plural == "clusterkopfpeerings"
    assert Peering(name="x", namespace="ns").plural == "kopfpeerings"


def test_a_namespaced_operator_peers_once_per_watched_namespace_and_cluster_wide_once() -> None:
    def made(*, standalone: bool = False, clusterwide: bool, namespaces: list[str] | None) -> list[Peering]:
        return peerings_for(
            name="op",
            priority=3,
            standalone=standalone,
            clusterwide=clusterwide,
            mandatory=True,
            namespaces=namespaces,
        )

    namespaced = made(clusterwide=False, namespaces=["a", "b", "a"])
    assert [(p.namespace, p.plural) for p in namespaced] == [("a", "kopfpeerings"), ("b", "kopfpeerings")]
    [cluster] = made(clusterwide=True, namespaces=None)
    assert cluster.plural == "clusterkopfpeerings"
    assert cluster.namespace is None
    assert made(standalone=True, clusterwide=False, namespaces=["a"]) == []


def test_kopf_pauses_on_a_conflict_in_any_namespace_so_the_replica_is_active_only_in_all() -> None:
    peerings = [Peering(name="op", priority=7, namespace=namespace) for namespace in ("a", "b")]
    bodies = {
        "a": {"status": {"me": _peer(7)}},
        "b": {"status": {"me": _peer(7), "other": _peer(9)}},
    }

    async def read(peering: Peering) -> Mapping[str, Any] | None:
        return bodies[peering.namespace or ""]

    leadership = Leadership(peerings, read_peering=read, clock=lambda: NOW)
    assert not asyncio.run(leadership.is_active())
    bodies["b"] = {"status": {"me": _peer(7), "other": _peer(9, seen_ago=61)}}
    assert asyncio.run(leadership.is_active())


def test_an_absent_peering_object_means_standby_with_peer_and_active_when_kopf_only_looked_for_it() -> None:
    async def absent(_: Peering) -> Mapping[str, Any] | None:
        return None

    mandatory = Leadership(Peering(name="op", priority=1, namespace="a"), read_peering=absent)
    assert not asyncio.run(mandatory.is_active()), "--peering NAME without its object: kopf cannot peer"
    optional = Leadership(
        Peering(name="default", priority=1, namespace="a", mandatory=False), read_peering=absent
    )
    assert asyncio.run(optional.is_active()), "no --peering and no 'default' object: kopf runs unpeered"
