"""Row: GetConfig p50/p99 quiet versus during a refresh storm, same run (bench/getconfig_latency.py).

One real config-service process, 500 parameters, 8 concurrent readers from a client process; quiet and
storm phases alternate (the storm process is paused with SIGSTOP between them) so outside load hits both
alike. The client-side figures include the Python gRPC client on the same 2 cores; the servicer's own
histogram (config_service_getconfig_latency_seconds) is reported beside them.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from bench.common import Check, RowResult, say
from bench.targets import STORM_RATIO, STORM_REFRESHES_PER_SECOND

SCRIPT = Path(__file__).resolve().parent / "getconfig_latency.py"
CLIENT = re.compile(
    r"^\s*(quiet|refresh storm): +(\d+) calls +(\d+)/s +p50 ([\d.]+) ms +p90 ([\d.]+) ms +p99 ([\d.]+) ms",
    re.M,
)
SERVER = re.compile(r"^\s*(quiet|refresh storm): p50 (\d+) us +p99 (\d+) us", re.M)
STORM = re.compile(r"refreshes: (\d+) applied during the storm \((\d+)/s\)")


def run(*, rounds: int, seconds: float) -> RowResult:
    result = RowResult(title="GetConfig latency, quiet vs refresh storm", method=__doc__ or "")
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--rounds", str(rounds), "--seconds", str(seconds)],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    client = {m.group(1): m.groups()[1:] for m in CLIENT.finditer(done.stdout)}
    server = {m.group(1): m.groups()[1:] for m in SERVER.finditer(done.stdout)}
    storm = STORM.search(done.stdout)
    if "quiet" not in client or "refresh storm" not in client:
        raise RuntimeError(f"could not read getconfig_latency.py output:\n{done.stdout}\n{done.stderr}")
    rows = []
    for phase in ("quiet", "refresh storm"):
        calls, rps, p50, p90, p99 = client[phase]
        s50, s99 = server.get(phase, ("?", "?"))
        rows.append([phase, calls, rps, f"{p50} ms", f"{p90} ms", f"{p99} ms", f"{s50} µs", f"{s99} µs"])
    quiet99, storm99 = float(client["quiet"][4]), float(client["refresh storm"][4])
    ratio = storm99 / quiet99
    say(f"  GetConfig p99 quiet {quiet99:.3f} ms, storm {storm99:.3f} ms (x{ratio:.2f})")
    result.tables.append(
        (["phase", "calls", "per s", "client p50", "p90", "p99", "servicer p50", "servicer p99"], rows)
    )
    if storm:
        result.notes.append(
            f"Refreshes applied during the storm phases: {storm.group(1)} ({storm.group(2)}/s)."
        )
    result.checks.append(
        Check(
            what=(
                "GetConfig p99 during a refresh storm (the target's storm is"
                f" {STORM_REFRESHES_PER_SECOND}/s; this one's rate is in its row)"
            ),
            target=f"≤ {STORM_RATIO:g} x quiet p99",
            measured=f"x{ratio:.2f} (client p99 {quiet99:.2f} → {storm99:.2f} ms)",
            met=ratio <= STORM_RATIO,
        )
    )
    return result
