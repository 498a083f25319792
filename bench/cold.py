"""Row: the first change after the operator's connections went idle and closed, against warm changes.

Why: a push path is only as fast as its first change after a quiet night. The operator keeps one gRPC
channel per instance; after `CONFIG_REFRESH_CHANNEL_IDLE_SECONDS` unused (10 minutes by default) the
fan-out's pool closes it and gRPC drops the connection (`grpc.client_idle_timeout_ms`), so the next change
pays a TCP connect (and a TLS handshake where the route has one) per instance. This row shortens that
setting for the run (the idle wait is seconds, not an hour) on the whole local stack (devstack.stack: real
config-service processes, kube-apiserver, local AWS, the operator as it ships), secured as the charts
deploy it (TLS on every instance's refresh port, a bearer token checked on every call: a reconnect pays
the handshake), then alternates: wait
longer than the idle setting, one change (cold), then changes back to back (warm); and the same again with
every connection the operator holds to kube-apiserver aborted (`ss -K`) just before the cold change, as an
idle timeout between the operator and the API server (a load balancer's) would leave them. Each change is
timed as the `path` row times it: PutParameter returned → the ConfigRefresh's last acknowledgment.

Before each change the operator's established TCP connections are counted by peer (from /proc: the
operator's socket inodes matched against /proc/net/tcp), so the row shows what was in fact closed:
connections to the instances, to kube-apiserver, to local AWS. The local AWS server (moto, werkzeug)
closes every connection after its answer, so AWS calls pay a connect on warm changes too (as they would not
against AWS itself, whose idle connections the SDK keeps for a while): that part of a cold start is not in
the difference this row shows.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.common import RowResult, fmt_ms, percentile, say
from bench.path import Rollouts, timed_change
from devstack.stack.builder import Security, Stack


def _inodes(pid: int) -> set[int]:
    found = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            found.add(int(target[8:-1]))
    return found


def _address(hex_address: str) -> tuple[str, int]:
    host, port = hex_address.split(":")
    # /proc/net/tcp holds IPv4 as one little-endian word; tcp6 as four, an IPv4-mapped one in the last
    # (gRPC's sockets are dual-stack: 127.0.0.10 shows there as ::ffff:127.0.0.10)
    word = host[-8:] if len(host) == 8 or host[:24] == "0000000000000000FFFF0000" else None
    if word is None:
        return host, int(port, 16)
    return ".".join(str(octet) for octet in bytes.fromhex(word)[::-1]), int(port, 16)


def connections(pid: int) -> list[tuple[int, str, int]]:
    """(local port, remote host, remote port) of each established TCP connection the process holds."""
    inodes = _inodes(pid)
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "01" and int(fields[9]) in inodes:  # 01: ESTABLISHED
                found.append((int(fields[1].rsplit(":", 1)[1], 16), *_address(fields[2])))
    return found


def reset_api_connections(stack: Stack) -> int:
    """Abort every connection the operator holds to kube-apiserver (`ss -K`), as an idle timeout on the
    way to the API server does (an AWS load balancer's is 350 s): kopf's watches are among them and are
    re-opened by kopf. Returns how many were aborted."""
    api = urlsplit(stack.control_plane.server).port
    pid = stack.operator.pid
    if pid is None:
        raise RuntimeError("the operator is not running")
    aborted = 0
    for local, _host, remote in connections(pid):
        if remote == api:
            done = subprocess.run(
                ["ss", "-K", "-t", "state", "established", f"( sport = :{local} and dport = :{remote} )"],
                capture_output=True,
                text=True,
                check=False,
            )
            aborted += done.returncode == 0
    return aborted


def peers(stack: Stack) -> dict[str, int]:
    """The operator's established connections, by what they reach."""
    api = urlsplit(stack.control_plane.server).port
    aws = urlsplit(stack.local_aws.endpoint_url).port
    refresh = {instance.refresh_port for instance in stack.fleet}
    counted: Counter[str] = Counter()
    pid = stack.operator.pid
    if pid is None:
        raise RuntimeError("the operator is not running")
    for _local, _host, port in connections(pid):
        if port == api:
            counted["kube-apiserver"] += 1
        elif port == aws:
            counted["local AWS"] += 1
        elif port in refresh:
            counted["instances"] += 1
        else:
            counted["other"] += 1
    return {key: counted[key] for key in ("instances", "kube-apiserver", "local AWS", "other")}


WARM = "warm"
COLD = "cold: gRPC channels idle-closed"
COLD_API = "cold: channels idle-closed and API connections reset"


SECURITY_LABELS: dict[Security, str] = {
    "tls-token": "TLS and a bearer token on every instance, as the charts deploy it",
    "plaintext": "plaintext, no token (the demo's loopback opt-out; not how the charts deploy it)",
}


def run(
    *, instances: int, cold: int, warm: int, idle_seconds: float, security: Security = "tls-token"
) -> RowResult:
    result = RowResult(title="Cold path: the first change after the connections closed", method=__doc__ or "")
    say(
        f"  starting the whole stack with {instances} instances ({security}), channel idle"
        f" {idle_seconds:g} s ..."
    )
    stack = Stack.start(
        instances=instances,
        namespace="bench-cold",
        operator_env={"CONFIG_REFRESH_CHANNEL_IDLE_SECONDS": f"{idle_seconds:g}"},
        security=security,
    )
    rollouts = Rollouts(stack)
    kinds = (WARM, COLD, COLD_API)
    samples: dict[str, list[tuple[float, float]]] = {kind: [] for kind in kinds}
    seen: dict[str, list[dict[str, int]]] = {kind: [] for kind in kinds}
    aborted: list[int] = []
    try:
        name = f"{stack.local_aws.prefix}bench/cold/flag"
        timed_change(stack, rollouts, name, "first")  # the route's first rollout opens every channel
        wait = idle_seconds * 2 + 2.0  # past the idle setting, and past gRPC's idle check after it
        for round_ in range(cold):
            for kind in (COLD, COLD_API):
                say(f"  idle {wait:.0f} s, then {kind}, then {warm} warm changes ({round_ + 1}/{cold})")
                time.sleep(wait)
                if kind == COLD_API:
                    aborted.append(reset_api_connections(stack))
                for change, count in ((kind, 1), (WARM, warm)):
                    for index in range(count):
                        seen[change].append(peers(stack))
                        value = f"{round_}-{index}-{change}"
                        samples[change].append(timed_change(stack, rollouts, name, value)[:2])
    finally:
        rollouts.close()
        stack.stop()
    rows: list[list[str]] = []
    summary: dict[str, Any] = {}
    for kind in kinds:
        put = [put_ms for put_ms, _ in samples[kind]]
        commit = [commit_ms for _, commit_ms in samples[kind]]
        before = {
            peer: f"{min(s[peer] for s in seen[kind])}-{max(s[peer] for s in seen[kind])}"
            for peer in seen[kind][0]
        }
        summary[kind] = percentile(put, 50)
        rows.append(
            [
                kind,
                str(len(put)),
                fmt_ms(percentile(put, 50)),
                fmt_ms(max(put)),
                fmt_ms(percentile(commit, 50)),
                ", ".join(f"{peer} {span}" for peer, span in before.items()),
            ]
        )
    say(
        f"  warm p50 {fmt_ms(summary[WARM])}, cold {fmt_ms(summary[COLD])},"
        f" cold + API reset {fmt_ms(summary[COLD_API])} ({instances} instances, idle {idle_seconds:g} s)"
    )
    result.tables.append(
        (
            [
                "change",
                "samples",
                "PutParameter returned → last ack p50",
                "max",
                "commit → last ack p50",
                "operator's open connections just before (min-max)",
            ],
            rows,
        )
    )
    result.notes.append(
        f"{instances} instances; CONFIG_REFRESH_CHANNEL_IDLE_SECONDS={idle_seconds:g} for the run (600 by"
        f" default); each cold change came after {idle_seconds * 2 + 2:.0f} s without any. p50 against warm:"
        f" {COLD} {summary[COLD] - summary[WARM]:+.0f} ms (x{summary[COLD] / summary[WARM]:.2f});"
        f" {COLD_API} {summary[COLD_API] - summary[WARM]:+.0f} ms"
        f" (x{summary[COLD_API] / summary[WARM]:.2f}; {sum(aborted)} connections to kube-apiserver aborted"
        f" in {len(aborted)} resets). Refresh calls: {SECURITY_LABELS[security]}. Loopback here: a network"
        " round trip per instance, as a real cluster has, would widen the cold gap (a reconnect costs"
        " TCP's round trip and TLS's on top of the warm call's)."
    )
    return result
