"""Row: GetConfig p50/p99 quiet versus during a refresh storm, same run (bench/getconfig_latency.py).

One real config-service process, 500 parameters, 8 concurrent readers from a client process; a quiet phase
and one phase per storm rate alternate in every round (each storm process is paused with SIGSTOP outside
its phase) so outside load hits all alike. The target's storm is 200 refreshes/s, pushed at that
controlled rate; the storm "max" beside it pushes as fast as the instance acknowledges (about 1,000-2,000/s
on 2 cores), as this row measured before. The 8 readers read back to back, which keeps the instance
busy with reads alone (about a core); two more phases in every round ("paced") read at a fixed 1,000
calls/s in all, quiet and during the 200/s storm, where the instance has room and a read waits only on
what else it is doing. The target counts as met only if both ratios are within it. The client-side
figures include the Python gRPC client on the same 2 cores; the servicer's own histogram
(config_service_getconfig_latency_seconds) and the instance's CPU during the measured reads are reported
beside them. Two control phases in every round ("on another instance", back to back and paced) aim the
200/s storm at a second config-service process while the readers read the measured one: the machine's
share of the ratio, with nothing of the storm on the measured instance's event loop.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import Check, RowResult, say
from bench.targets import STORM_RATIO, STORM_REFRESHES_PER_SECOND

# The control phases' suffix (the storm aimed at another config-service process, not the measured one),
# in getconfig_latency.py's output: that script takes it from here.
ELSEWHERE = "on another instance"

# The paced phases' read rate: about a quarter of what one instance serves back to back on this machine,
# so a read there waits on the storm's calls, not on other reads queued before it.
PACED_READS_PER_SECOND = 1000.0
# A storm phase that applied less than this share of its rate did not measure the target's storm.
STORM_SHORTFALL = 0.9

SCRIPT = Path(__file__).resolve().parent / "getconfig_latency.py"
PHASE = r"(quiet|storm [^:]+|paced quiet|paced storm [^:]+)"
CLIENT = re.compile(
    rf"^\s*{PHASE}: +(\d+) calls +(\d+)/s +p50 ([\d.]+) ms +p90 ([\d.]+) ms +p99 ([\d.]+) ms", re.M
)
SERVER = re.compile(rf"^\s*{PHASE}: p50 (\d+) us +p99 (\d+) us", re.M)
STORM = re.compile(r"refreshes: ((?:paced )?storm [^:]+): (\d+) applied \((\d+)/s\)")
CPU = re.compile(r"((?:paced )?quiet|(?:paced )?storm [^,]+?) (\d+)% of a core")
PACED = re.compile(r"paced reads: ([\d.]+)/s in all")
PROFILE = re.compile(r"^profile \(this build, ([^,]+),[^\n]*\n((?:\s+[\d.]+%  [^\n]+\n)+)", re.M)
PER_CALL = re.compile(
    r"per call \(this build\): Refresh (\d+) us of instance CPU \(\d+ at ([^,]+), alone\), GetConfig (\d+) us"
)
STORM_CLIENT = re.compile(
    r"storm process \(this build\): (\d+) us of its own CPU per Refresh pushed \((\d+)%"
)
SHARE = re.compile(r"^\s+([\d.]+)%  ([^\n]+)$", re.M)


def control_note(
    client: dict[str, tuple[str, ...]], storms: dict[str, tuple[str, str]], target_phase: str
) -> str | None:
    """What the control phases (the same storm aimed at another instance) say about the storm phases.

    A control storm that ran short of its rate (the other instance starved of CPU by the readers) gives
    the machine a lighter load than the storm phase did, so its ratio can only understate the machine's
    share: it is reported with its rate, not refused as a short storm phase is."""
    pairs = [
        (how, f"{prefix}{target_phase}", f"{prefix}{target_phase} {ELSEWHERE}", quiet)
        for how, prefix, quiet in (("back to back", "", "quiet"), ("paced", "paced ", "paced quiet"))
    ]
    parts = []
    own_shares = []
    for how, storm, elsewhere, quiet in pairs:
        if storm in client and elsewhere in client and quiet in client:
            quiet99, storm99, elsewhere99 = (float(client[phase][4]) for phase in (quiet, storm, elsewhere))
            own_shares.append(storm99 / elsewhere99)
            rate = storms.get(elsewhere, ("?", "?"))[1]
            parts.append(
                f"with reads {how}, p99 x{elsewhere99 / quiet99:.2f} quiet with the storm on the other"
                f" instance ({rate}/s applied) against x{storm99 / quiet99:.2f} with it on this one:"
                f" x{own_shares[-1]:.2f} is this instance's own share"
            )
    if not parts:
        return None
    if max(own_shares) <= STORM_RATIO:
        verdict = (
            f"This instance's own share is within the target's x{STORM_RATIO:g}: the ratio above it is the"
            " machine's, four busy processes (the readers' client, this instance, the storm's client and the"
            " instance it refreshes) on 2 cores, which a fleet does not have (there the operator that sends"
            " the refreshes and the readers run elsewhere)."
        )
    else:
        verdict = (
            f"This instance's own share is above the target's x{STORM_RATIO:g}: part of the ratio is the"
            " instance's own, beyond what the storm costs the machine."
        )
    figures = "; ".join(parts)
    return (
        f"The control, same rounds: the {STORM_REFRESHES_PER_SECOND}/s storm aimed at another config-service"
        " process on the same machine while the readers read this one. The storm's client and that"
        " instance's Refresh work take the shared cores as in the storm phase, but nothing of it runs on"
        " this instance's event loop or GIL; what the storm phase adds beyond its control is what the"
        f" measured instance itself pays. {figures[0].upper()}{figures[1:]}. {verdict}"
    )


def run(
    *, rounds: int, seconds: float, rates: tuple[float, ...] = (STORM_REFRESHES_PER_SECOND, 0)
) -> RowResult:
    command = [sys.executable, str(SCRIPT), "--rounds", str(rounds), "--seconds", str(seconds)]
    command += ["--storm-rates", ",".join(f"{rate:g}" for rate in rates)]
    command += ["--paced-reads", f"{PACED_READS_PER_SECOND:g}"]
    with tempfile.TemporaryDirectory(prefix="getconfig-profile-") as profiles:
        command += ["--profile", profiles, "--profile-seconds", "6"]
        done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=True)
    return result_of(done.stdout, done.stderr)


def result_of(stdout: str, stderr: str = "") -> RowResult:
    """The row from getconfig_latency.py's output (the section of this build; a base build is left out)."""
    result = RowResult(title="GetConfig latency, quiet vs refresh storm", method=__doc__ or "")
    section = stdout.split("[this build]", 1)[-1].split("\n[", 1)[0]
    client = {m.group(1): m.groups()[1:] for m in CLIENT.finditer(section)}
    server = {m.group(1): m.groups()[1:] for m in SERVER.finditer(section)}
    storms = {m.group(1): (m.group(2), m.group(3)) for m in STORM.finditer(section)}
    cpu = {m.group(1): m.group(2) for m in CPU.finditer(section)}
    target_phase = f"storm {STORM_REFRESHES_PER_SECOND:g}/s"
    if "quiet" not in client or target_phase not in client:
        raise RuntimeError(f"could not read getconfig_latency.py output:\n{stdout}\n{stderr}")
    short = {
        phase: rate
        for phase, (_, rate) in storms.items()
        if phase.endswith(target_phase) and int(rate) < STORM_SHORTFALL * STORM_REFRESHES_PER_SECOND
    }
    if short:
        # A storm process that ended early (or fell behind) leaves phases with a lighter storm, or none:
        # their ratio would say less than the target asks, so there is no figure rather than a kind one.
        raise RuntimeError(
            "the storm ran short of its rate: "
            + ", ".join(f"{phase} {rate}/s applied" for phase, rate in short.items())
            + f" (of {STORM_REFRESHES_PER_SECOND}/s)"
        )
    rows = []
    quiet99 = float(client["quiet"][4])
    for phase, (calls, rps, p50, p90, p99) in client.items():
        base99 = float(client["paced quiet"][4]) if phase.startswith("paced") else quiet99
        s50, s99 = server.get(phase, ("?", "?"))
        applied = storms.get(phase)
        rows.append(
            [
                phase,
                f"{applied[1]}/s ({applied[0]} applied)" if applied else "-",
                calls,
                rps,
                f"{p50} ms",
                f"{p90} ms",
                f"{p99} ms",
                f"x{float(p99) / base99:.2f}",
                f"{s50} µs",
                f"{s99} µs",
                f"{cpu[phase]} %" if phase in cpu else "?",
            ]
        )
    result.tables.append(
        (
            [
                "phase",
                "refreshes applied",
                "reads",
                "per s",
                "client p50",
                "p90",
                "p99",
                "p99 vs quiet",
                "servicer p50",
                "servicer p99",
                "instance CPU (of a core)",
            ],
            rows,
        )
    )
    storm99 = float(client[target_phase][4])
    ratio = storm99 / quiet99
    achieved = storms.get(target_phase, ("?", "?"))[1]
    say(f"  GetConfig p99 quiet {quiet99:.3f} ms, {target_phase} {storm99:.3f} ms (x{ratio:.2f})")
    measured = f"x{ratio:.2f} with reads back to back (client p99 {quiet99:.2f} → {storm99:.2f} ms)"
    met = ratio <= STORM_RATIO
    paced_rate = PACED.search(section)
    if paced_rate and "paced quiet" in client and f"paced {target_phase}" in client:
        paced_quiet99 = float(client["paced quiet"][4])
        paced99 = float(client[f"paced {target_phase}"][4])
        paced_ratio = paced99 / paced_quiet99
        say(f"  reads paced at {paced_rate.group(1)}/s: p99 {paced_quiet99:.3f} → {paced99:.3f} ms")
        measured += (
            f"; x{paced_ratio:.2f} with reads paced at {float(paced_rate.group(1)):g}/s"
            f" ({paced_quiet99:.2f} → {paced99:.2f} ms)"
        )
        met = met and paced_ratio <= STORM_RATIO
    result.checks.append(
        Check(
            what=(
                f"GetConfig p99 during a refresh storm of {STORM_REFRESHES_PER_SECOND} refreshes/s"
                f" (pushed at that rate; {achieved}/s applied)"
            ),
            target=f"≤ {STORM_RATIO:g} x quiet p99",
            measured=measured,
            met=met,
        )
    )
    control = control_note(client, storms, target_phase)
    cost = PER_CALL.search(stdout)
    if cost and paced_rate and control is None:  # a model of what the control phases measure
        busy = STORM_REFRESHES_PER_SECOND * int(cost.group(1)) / 1e4  # calls/s x µs → % of the time
        result.notes.append(
            "Why the paced ratio is a floor too: a Refresh and a GetConfig are served by the same event"
            " loop, one call at a time, so a read that arrives while a Refresh call is being handled waits"
            f" for the rest of it (up to its {cost.group(1)} µs). At {STORM_REFRESHES_PER_SECOND} Refresh"
            f" calls/s the loop is inside one for about {busy:.0f}% of the time, more than the 1% a p99"
            " leaves, so the p99 moves by up to one Refresh call's time, whatever the read path does; most of"
            " that time is grpc.aio's per-call work, not the Refresh handler (the profile below)."
        )
    if cost:
        result.notes.append(
            f"The instance's CPU per call, each kind alone: a Refresh (at {cost.group(2)})"
            f" {cost.group(1)} µs, a GetConfig {cost.group(3)} µs. The storm's share of the instance is"
            f" about {STORM_REFRESHES_PER_SECOND} x that Refresh cost per second, taken from the readers on"
            " the same event loop and GIL"
            + (
                ": what that costs the reads is what the control measures (below)."
                if control
                else ": roughly the ratio's floor, whatever the read path does (a model)."
            )
        )
    storm_client = STORM_CLIENT.search(stdout)
    if storm_client:
        result.notes.append(
            "The storm's own client, a Python gRPC process on the same 2 cores, spends"
            f" {storm_client.group(1)} µs of CPU per Refresh it pushes ({storm_client.group(2)}% of a core at"
            f" {STORM_REFRESHES_PER_SECOND}/s): with the readers back to back (the readers' process and the"
            " instance each near a core) that is taken from them too, which a fleet's operator, on another"
            " node, would not take."
        )
    result.notes.append(
        "Serving Refresh off the read path's event loop was tried for issue 20 (once, not part of this run):"
        " config-service with its Refresh port on grpc's synchronous server, the call handled on a worker"
        " thread (the cache's swap is already thread-safe), measured beside this build with"
        " `python bench/getconfig_latency.py --rounds 10 --seconds 2 --storm-rates 200 --paced-reads 1000"
        " --base-service DIR`. GetConfig p99 during the 200/s storm: 5.73 ms on the thread against 5.28 ms"
        " here with reads back to back (x1.40 and x1.42 their quiet p99), 3.58 against 3.83 ms paced; the"
        " quiet p99 of the paced phases moved between 1.7 and 2.4 ms from one build to the other in that one"
        " run. No gain beyond that noise: the Refresh on its thread still takes the GIL for its Python"
        " work, and the worker thread's wake-ups are added, so the change was not kept."
    )
    profile = PROFILE.search(stdout)
    if profile:
        shares = [[label.strip(), f"{share}%"] for share, label in SHARE.findall(profile.group(2))]
        result.tables.append(
            ([f"where the instance's GIL time goes ({profile.group(1)})", "share of samples"], shares)
        )
        result.notes.append(
            "The profile: py-spy, native frames included, only the thread holding the GIL, while the"
            " target's storm runs and the readers read (after the measured rounds; py-spy pauses the process"
            " per sample). The readers' GetConfig and the storm's Refresh calls share one event loop and"
            " one GIL; \"gRPC aio server machinery\" is grpc's Cython and C core serving both services'"
            " calls, which the profile cannot split by service."
        )
    else:
        result.notes.append("No profile: py-spy is not installed or could not attach (see bench/pyspy.py).")
    if control:
        result.notes.append(control)
    for phase in client:
        if phase not in ("quiet", target_phase) and not phase.startswith("paced") and ELSEWHERE not in phase:
            result.notes.append(
                f"Beside the target's storm, {phase} ({storms.get(phase, ('?', '?'))[1]}/s applied):"
                f" GetConfig p99 x{float(client[phase][4]) / quiet99:.2f} quiet (not a target)."
            )
    return result
