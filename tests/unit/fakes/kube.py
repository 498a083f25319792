"""A fake Kubernetes API as our clients see it: configctl's reads, the consumer's creates, podSync's pods.

One object serves the three clients (each test uses the part its code calls):
- configctl: `list_routes()` answers `routes`; `list_refreshes()` answers `polls` in turn, one list per call
  (the last one from then on), and records each label selector;
- the operator's consumer: `create_refresh()` stores the object in `objects` (False when it exists; a
  KubeError while `down`); with `values`, the object's rollout finishes `fan_out_seconds` later;
- podSync: `list_pods()` answers `pods`; `apply_route_status()` records the body in `applied`.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from refresh_operator.kube import KubeError
from refresh_operator.values import ValueCache


class FakeKube:
    namespace = "test"

    def __init__(
        self,
        routes: list[dict[str, Any]] | None = None,
        polls: list[list[dict[str, Any]]] | None = None,
        *,
        down: bool = False,
        values: ValueCache | None = None,
        fan_out_seconds: float = 0.0,
    ) -> None:
        self.routes = routes or []
        self.polls = polls or [[]]
        self.selectors: list[str | None] = []
        self.down = down
        self.values = values
        self.fan_out_seconds = fan_out_seconds
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.pods: list[dict[str, Any]] = []
        self.applied: list[dict[str, Any]] = []

    # ----- configctl --------------------------------------------------------------------------------

    def list_routes(self) -> list[dict[str, Any]]:
        return self.routes

    def list_refreshes(self, *, label_selector: str | None = None) -> list[dict[str, Any]]:
        self.selectors.append(label_selector)
        return self.polls.pop(0) if len(self.polls) > 1 else self.polls[0]

    # ----- the operator's consumer ------------------------------------------------------------------

    def create_refresh(self, namespace: str, body: dict[str, Any]) -> bool:
        if self.down:
            raise KubeError("create ConfigRefresh: connection refused", status=0)
        key = (namespace, body["metadata"]["name"])
        if key in self.objects:
            return False
        self.objects[key] = body
        if self.values is not None:
            timer = threading.Timer(self.fan_out_seconds, self.values.fan_out_done, key)
            timer.daemon = True
            timer.start()
        return True

    # ----- podSync ------------------------------------------------------------------------------------

    async def list_pods(self, namespace: str, match_labels: Mapping[str, str]) -> list[dict[str, Any]]:
        return list(self.pods)

    async def apply_route_status(self, namespace: str, name: str, body: Mapping[str, Any]) -> None:
        self.applied.append(dict(body))
