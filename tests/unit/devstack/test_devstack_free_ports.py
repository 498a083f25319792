"""Free ports for the servers the tests start: never one handed out moments ago, never one in use, and
never from the range the kernel gives outgoing connections their local ports from."""

from __future__ import annotations

import collections
import random
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.controlplane import procs


def scripted(monkeypatch: pytest.MonkeyPatch, ports: list[int]) -> None:
    """Make the port chooser try `ports` in this order."""
    choices: Iterator[int] = iter(ports)
    monkeypatch.setattr(random, "randint", lambda low, high: next(choices))


@pytest.fixture
def fresh_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(procs, "_handed_out", collections.OrderedDict())


def unused_port() -> int:
    """A port in the chooser's range that nothing on 127.0.0.1 holds now."""
    low, high = procs.FREE_PORT_RANGE
    for port in range(high, low, -1):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port in the range")


@pytest.mark.usefixtures("fresh_registry")
def test_a_port_just_handed_out_is_not_handed_out_again(monkeypatch: pytest.MonkeyPatch) -> None:
    first = unused_port()
    second = first - 1
    scripted(monkeypatch, [first, first, second])
    assert procs.free_port() == first
    assert procs.free_port() == second  # `first` is still free (its server has not bound it yet): skipped


@pytest.mark.usefixtures("fresh_registry")
def test_a_port_in_use_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        taken = holder.getsockname()[1]
        other = unused_port()
        scripted(monkeypatch, [taken, other])
        assert procs.free_ports(1) == [other]


@pytest.mark.usefixtures("fresh_registry")
def test_ports_are_distinct_and_below_the_ephemeral_range() -> None:
    ports = procs.free_ports(50) + [procs.free_port() for _ in range(50)]
    assert len(set(ports)) == 100
    ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    assert all(procs.FREE_PORT_RANGE[0] <= port < ephemeral_low for port in ports)


@pytest.mark.usefixtures("fresh_registry")
def test_a_reservation_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    port = unused_port()
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    scripted(monkeypatch, [port, port])
    assert procs.free_port() == port
    now[0] += procs.HANDED_OUT_SECONDS + 1
    assert procs.free_port() == port
