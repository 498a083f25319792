"""Progressive rollouts: a route's `spec.rollout` splits a rollout's targets into waves.

Waves are cumulative sizes, e.g. ["1", "10%", "50%", "100%"]: the first wave refreshes one instance, the
second brings the total to 10 % of the targets (rounded up), and so on; the last wave always reaches every
target. Targets are taken in instance-id order, so a resumed rollout builds the same waves. After each
wave but the last, the rollout halts (phase Halted) when the wave's failed fraction exceeds
failureThreshold; otherwise it bakes for bakeSeconds, during which the optional health gate (an HTTP URL)
must keep answering 2xx. A halted rollout waits for `configctl rollout resume|abort` (an annotation).
"""

from __future__ import annotations

import dataclasses
import math
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any


@dataclasses.dataclass(frozen=True)
class RolloutSpec:
    waves: tuple[str, ...]
    bake_seconds: float
    failure_threshold: float
    health_gate: str | None


def rollout_from_spec(spec: Mapping[str, Any]) -> RolloutSpec | None:
    """The route's spec.rollout, or None (everything at once, the default)."""
    raw = spec.get("rollout")
    if not isinstance(raw, Mapping) or not raw.get("waves"):
        return None
    gate = raw.get("healthGate") or {}
    return RolloutSpec(
        waves=tuple(str(wave) for wave in raw["waves"]),
        bake_seconds=float(raw.get("bakeSeconds", 60)),
        failure_threshold=float(raw.get("failureThreshold", 0)),
        health_gate=str(gate.get("url")) if isinstance(gate, Mapping) and gate.get("url") else None,
    )


def plan_waves(waves: Sequence[str], total: int) -> list[int]:
    """Cumulative target counts per wave (strictly increasing, the last one `total`)."""
    ends: list[int] = []
    if total <= 0:
        return ends
    for wave in waves:
        text = wave.strip()
        count = math.ceil(float(text[:-1]) * total / 100) if text.endswith("%") else int(text)
        count = min(max(count, 1), total)
        if not ends or count > ends[-1]:
            ends.append(count)
    if total and (not ends or ends[-1] < total):
        ends.append(total)
    return ends


def health_gate_ok(url: str, *, timeout: float = 2.0) -> bool:
    """True if `url` answers 2xx within `timeout`. Blocking: run it in a thread."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (operator's own config)
            return 200 <= int(response.status) < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False
