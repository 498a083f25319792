"""The rss row (bench/rss.py) at a tiny size: both measured passes, the tracemalloc profile of the operator
as it ships, and the lone-channel section, on the real stack. Memory figures are printed, never asserted;
what is checked is what is knowable: every route rolled out, one snapshot per stage from the operator
process, the channels the rollouts opened showing up as gRPC's growth, and the notes built from them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from devstack.controlplane.plane import ControlPlane

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `bench` is a top-level directory, not an installed package
    sys.path.insert(0, str(ROOT))

from bench import memory_profile, rss  # noqa: E402


@pytest.mark.timeout(900)
def test_the_rss_row_profiles_the_operator_it_measures(control_plane: ControlPlane, tmp_path: Path) -> None:
    # control_plane: the binaries exist; each pass runs its own apiserver, as make bench does.
    measured, profile, channels = rss.operator_memory(routes=2, per_route=3, channels=20, keep=tmp_path)
    header, rows = measured.tables[0]
    assert [row[0] for row in rows] == list(rss.VARIANTS)
    assert all(row[header.index("routes rolled out")] == "2 of 2" for row in rows)
    assert measured.notes[0].startswith("Where it goes")
    settled = header.index(f"RSS, routes indexed, {rss.SETTLE_SECONDS} s later")
    assert all(row[settled].endswith(" MiB") for row in rows)
    assert any(
        note.startswith(f"{rss.SETTLE_SECONDS} s after every route is Ready") for note in measured.notes
    )
    assert any(note.startswith("The floor of the peak") for note in measured.notes)
    assert measured.checks[0].met is not None

    assert {path.name for path in tmp_path.glob("*.snapshot")} == {
        f"{stage}.snapshot" for stage in memory_profile.STAGES
    }
    packages = profile.tables[0][1]
    grpc = next(row for row in packages if row[0].startswith("grpc"))
    assert float(grpc[5]) > 0  # KiB per instance the rollouts added to gRPC's Python objects
    assert any(row[0].startswith("**native") for row in packages)

    lone = channels.tables[0][1]
    assert [row[1] for row in lone] == ["20"] * len(lone)  # every call applied, in every variant
