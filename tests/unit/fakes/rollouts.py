"""In-process fakes for the rollouts unit tests: the Kubernetes API, the fan-out, Cloud Map and SSM."""

from __future__ import annotations

import asyncio
import builtins
import datetime
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from configrefresh.v1 import refresh_service_pb2 as pb
from refresh_operator.fanout import RefreshPolicy, Result, Target, TargetOutcome

T0 = datetime.datetime(2026, 11, 26, 10, 0, 0, tzinfo=datetime.UTC)


class FakeKube:
    """Records status patches, label patches and created ConfigRefreshes; `list` answers `items`."""

    def __init__(self, items: Sequence[Mapping[str, Any]] = ()) -> None:
        self.lock = threading.Lock()
        self.status_patches: list[tuple[str, dict[str, Any]]] = []
        self.patches: list[tuple[str, dict[str, Any]]] = []
        self.created: list[dict[str, Any]] = []
        self.items = list(items)
        self.routes: dict[str, dict[str, Any]] = {}

    def patch_status(self, plural: str, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        with self.lock:
            self.status_patches.append((name, dict(status)))

    def patch(self, plural: str, namespace: str, name: str, body: Mapping[str, Any]) -> None:
        with self.lock:
            self.patches.append((name, dict(body)))

    def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.routes.get(name)

    def list(self, plural: str, namespace: str | None, *, label_selector: str | None = None) -> list[Any]:
        return list(self.items)

    def create_refresh(self, namespace: str, body: Mapping[str, Any]) -> bool:
        with self.lock:
            self.created.append(dict(body))
        return True

    # `builtins.list`: inside this class body `list` is the method above.
    def patches_of(self, name: str) -> builtins.list[dict[str, Any]]:
        with self.lock:
            return [patch for who, patch in self.status_patches if who == name]

    def final(self, name: str) -> dict[str, Any]:
        """The last status patch of `name` that set a phase."""
        return [patch for patch in self.patches_of(name) if "phase" in patch][-1]


def targets(count: int, *, namespace: str = "team-a") -> list[Target]:
    """Instances registered by `namespace`'s pods (the k8s-namespace attribute podSync sets)."""
    return [Target(f"i-{n:02d}", f"127.0.0.1:{7000 + n}", {"k8s-namespace": namespace}) for n in range(count)]


class FakeFanOut:
    """Answers each target with `answer(target)`; records the waves it was given. With `hold` set, a run
    waits until its rollout is cancelled (or `release` is set) before answering."""

    def __init__(self, answer: Callable[[Target], Result] = lambda _: Result.APPLIED) -> None:
        self.answer = answer
        self.calls: list[list[str]] = []
        self.requests: list[pb.RefreshRequest] = []
        self.policies: list[RefreshPolicy] = []
        self.hold = False
        self.release = asyncio.Event()
        self.started = asyncio.Event()

    async def run(
        self,
        *,
        targets: Sequence[Target],
        request: pb.RefreshRequest,
        policy: RefreshPolicy,
        already_done: Mapping[str, TargetOutcome] | None = None,
        on_outcome: Callable[[TargetOutcome], None] | None = None,
        cancel: asyncio.Event | None = None,
        started_at: float | None = None,
    ) -> list[TargetOutcome]:
        self.calls.append([target.instance_id for target in targets])
        self.requests.append(request)
        self.policies.append(policy)
        self.started.set()
        if self.hold:
            waiters = [asyncio.ensure_future(self.release.wait())]
            if cancel is not None:
                waiters.append(asyncio.ensure_future(cancel.wait()))
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters:
                waiter.cancel()
            if cancel is not None and cancel.is_set():
                return [TargetOutcome(t, Result.FAILED, 0, 0, "cancelled", None) for t in targets]
        outcomes = []
        for target in targets:
            done = (already_done or {}).get(target.instance_id)
            if done is not None and done.result.acknowledged:
                outcomes.append(done)
                continue
            result = self.answer(target)
            acked = result.acknowledged
            outcome = TargetOutcome(
                target,
                result,
                request.version if acked else 0,
                1,
                None if acked else "UNAVAILABLE: down",
                T0.timestamp() + 0.05 if acked else None,
            )
            if on_outcome is not None:
                on_outcome(outcome)
            outcomes.append(outcome)
        return outcomes


class FakeDiscovery:
    def __init__(self, found: Sequence[Target]) -> None:
        self.found = list(found)
        self.queries: list[Mapping[str, str]] = []

    async def __call__(
        self,
        client: Any,
        *,
        namespace: str,
        service: str,
        query_parameters: Mapping[str, str],
        default_port: int | None = None,
    ) -> list[Target]:
        self.queries.append(dict(query_parameters))
        return list(self.found)


class FakeSsm:
    """GetParameter answers the version it holds."""

    def __init__(self, name: str, version: int, modified: datetime.datetime) -> None:
        self.parameter = {
            "Name": name,
            "Type": "String",
            "Value": f"value-{version}",
            "Version": version,
            "LastModifiedDate": modified,
        }

    def get_parameter(self, *, Name: str, WithDecryption: bool) -> dict[str, Any]:
        return {"Parameter": dict(self.parameter)}
