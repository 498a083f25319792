"""Where the scale and path rows say the operator's time goes: each rollout's stages from its own status
and the operator's log, and the profile's samples sorted into buckets (bench/scale_profile.py)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:  # `bench` is a top-level directory, not an installed package
    sys.path.insert(0, str(ROOT))

from bench import pyspy, scale_profile  # noqa: E402

LOG = """\
[2026-12-06 02:40:01,100] refresh_operator.fanout.e [INFO    ] fan-out fleet-abc-v3-1f2e: 1000 targets, \
Applied=1000, Stale=0, Rejected=0, Failed=0 in 350.5 ms
[2026-12-06 02:40:02,100] refresh_operator.fanout.e [INFO    ] fan-out fleet-abc-v4-9d8c: 1000 targets, \
Applied=1000, Stale=0, Rejected=0, Failed=0 in 120.0 ms
"""


def final(name: str, *, started: str, completed: str, latency: int | None) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": "Succeeded", "startedAt": started, "completedAt": completed}
    if latency is not None:
        status["latencyMs"] = latency
    return {
        "metadata": {"name": name},
        "spec": {"parameter": {"name": "/p", "version": 3, "lastModified": "2026-12-06T02:40:00.000000Z"}},
        "status": status,
    }


def test_a_rollouts_stages_come_from_its_status_and_the_fan_out_log_line() -> None:
    items = [
        final(
            "fleet-abc-v3-1f2e",
            started="2026-12-06T02:40:00.040000Z",
            completed="2026-12-06T02:40:00.400000Z",
            latency=392,
        ),
        final(
            "no-latency",
            started="2026-12-06T02:40:00.040000Z",
            completed="2026-12-06T02:40:00.4Z",
            latency=None,
        ),
    ]
    (stage,) = scale_profile.stages(items, LOG)
    assert stage.discovered == pytest.approx(40.0)
    assert stage.first_call == pytest.approx(392 - 350.5)
    assert stage.last_ack == 392
    assert stage.completed == pytest.approx(400.0)
    header, rows = scale_profile.stages_table([stage], "1,000 instances")
    assert header[0] == "stage, 1,000 instances"
    spans = {row[0].split(" (")[0]: row[1] for row in rows}
    assert spans["fan-out: first call → last acknowledgment"] == "350 ms"
    assert spans["last acknowledgment → final status composed"] == "8.0 ms"


def test_a_rollout_without_its_log_line_has_no_first_call() -> None:
    item = final("other", started="2026-12-06T02:40:00.1Z", completed="2026-12-06T02:40:00.3Z", latency=250)
    (stage,) = scale_profile.stages([item], LOG)
    assert stage.first_call is None
    _, rows = scale_profile.stages_table([stage], "x")
    assert not any(row[0].startswith("fan-out") for row in rows)  # no span without its two ends


def test_the_waits_note_counts_follow_ups_and_hand_overs_at_a_holds_end() -> None:
    log = (
        LOG
        + "[2026-12-06 02:40:03,000] refresh_operator.coa [INFO    ] Follow-up run of /p: 1 change(s) joined"
        " over 0 ms, the first during the key's burst, the key idle; starts 501 ms after the last joined\n"
        "[2026-12-06 02:40:04,000] refresh_operator.coa [INFO    ] Follow-up run of /p: 3 change(s) joined"
        " over 20 ms, the first during the previous run (its read and create); starts 480 ms after the last"
        " joined\n"
        "[2026-12-06 02:40:05,000] refresh_operator.coa [INFO    ] Change of /p came during the previous"
        " run's hold; starts as the hold ends, 4 ms later\n"
    )
    note = scale_profile.waits_note(log)
    assert "of 2 rollouts, 2 waited in a key's follow-up (median 490 ms, longest 501 ms)" in note
    assert "; 1 change(s) reached the consumer during the previous rollout's hold" in note
    assert "none waited" in scale_profile.waits_note(LOG)


def test_profile_samples_go_to_the_first_bucket_whose_code_is_on_their_stack(tmp_path: Path) -> None:
    loop = "run (asyncio/runners.py:1);BaseEventLoop._run_once (asyncio/base_events.py:2)"
    raw = tmp_path / "raw.txt"
    raw.write_text(
        "\n".join(
            [
                f"{loop};FanOut._attempt (refresh_operator/fanout/engine.py:3);"
                "UnaryUnaryCall._invoke (grpc/aio/_call.py:4) 6",
                "_bootstrap (threading.py:1);Kube.patch_status (refresh_operator/kube.py:5);"
                "loads (json/__init__.py:6) 2",
                f"{loop};worker (kopf/_core/reactor/queueing.py:7);deepcopy (copy.py:8) 1",
                f"{loop} 1",
            ]
        )
    )
    shares = dict(pyspy.shares(raw, scale_profile.BUCKETS))
    assert shares["gRPC fan-out (engine, grpc.aio calls, channels)"] == pytest.approx(0.6)
    assert shares["status patches (building the body, JSON, the PATCH call)"] == pytest.approx(0.2)
    assert shares["kopf (watch streams, handler machinery, its API client)"] == pytest.approx(0.1)
    assert shares["asyncio event loop itself"] == pytest.approx(0.1)
    assert sum(shares.values()) == pytest.approx(1.0)
    profile = scale_profile.Profile(
        rollouts=3, seconds=1.0, samples=10, cpu_seconds=0.5, shares=list(shares.items()), top=[]
    )
    (bucket_header, bucket_rows), _ = scale_profile.profile_tables(profile, "100 instances")
    assert "3 rollouts in 1.0 s; GIL held 4% of the window, operator CPU 50% of a core" in bucket_header[0]
    assert ["gRPC fan-out (engine, grpc.aio calls, channels)", "60%"] in bucket_rows
