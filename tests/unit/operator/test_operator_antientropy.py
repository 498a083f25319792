"""Anti-entropy asks the fan-out what instances hold (`FanOut.states`) and repairs only those behind."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any

from configrefresh_api.versions import Operation, VersionKey
from refresh_operator.antientropy import AntiEntropy
from refresh_operator.aws import AwsClients, Blocking
from refresh_operator.context import OperatorContext
from refresh_operator.fanout import RefreshPolicy, Target
from refresh_operator.fanout.states import Held, InstanceState
from refresh_operator.parameter_store import ParameterSnapshot
from refresh_operator.routes import RouteIndex, route_from_object
from refresh_operator.settings import OperatorSettings
from refresh_operator.values import ValueCache
from tests.unit.fakes.rollouts import T0, FakeKube

PARAMETER = "/config-service/acme/orders/db_url"


class CloudMap:
    def discover_instances(self, **_: Any) -> dict[str, Any]:
        return {
            "Instances": [
                {
                    "InstanceId": f"i-{n:02d}",
                    "Attributes": {
                        "AWS_INSTANCE_IPV4": "127.0.0.1",
                        "AWS_INSTANCE_PORT": str(7000 + n),
                        "k8s-namespace": "team-a",
                    },
                }
                for n in range(3)
            ]
        }


class StatesFanOut:
    def __init__(self, answers: dict[str, InstanceState | None]) -> None:
        self.answers = answers
        self.asked: list[tuple[list[str], str, RefreshPolicy]] = []

    async def states(
        self, targets: Sequence[Target], *, name_prefix: str, policy: RefreshPolicy
    ) -> dict[str, InstanceState | None]:
        self.asked.append(([t.instance_id for t in targets], name_prefix, policy))
        return {t.instance_id: self.answers.get(t.instance_id) for t in targets}


async def test_only_the_instances_behind_get_a_targeted_refresh_and_silent_ones_are_skipped() -> None:
    route = route_from_object(
        {
            "metadata": {"name": "orders", "namespace": "team-a", "uid": "u", "generation": 1},
            "spec": {
                "parameterPrefix": "/config-service/",
                "discovery": {"cloudMap": {"namespace": "apps.local", "service": "config-service"}},
            },
        }
    )
    newest = ParameterSnapshot(PARAMETER, Operation.UPSERT, 3, T0, "String", "v3")
    fanout = StatesFanOut(
        {
            "i-00": {PARAMETER: Held(VersionKey(T0, 3), deleted=False)},
            "i-01": {PARAMETER: Held(VersionKey(T0 - datetime.timedelta(seconds=9), 2), deleted=False)},
            "i-02": None,  # did not answer (or its breaker is open): skipped this pass
        }
    )
    policy = RefreshPolicy(timeout_seconds=1.5)
    kube = FakeKube()
    blocking = Blocking(threads=2)
    try:
        repaired = await AntiEntropy(
            context=OperatorContext(
                settings=OperatorSettings(queue_url="https://sqs.example/q", region="us-east-1"),
                clients=AwsClients(sqs=None, ssm=None, servicediscovery=CloudMap()),
                blocking=blocking,
                kube=kube,  # type: ignore[arg-type]
                routes=RouteIndex(),
                values=ValueCache(),
            ),
            fanout=fanout,
            policy_for=lambda _: policy,
        ).repair(route, [newest], {})
    finally:
        blocking.shutdown()
    assert repaired == 1
    assert fanout.asked == [(["i-00", "i-01", "i-02"], "/config-service/", policy)]
    (body,) = kube.created
    assert body["spec"]["targets"] == ["i-01"]
    assert body["spec"]["source"]["trigger"] == "resync"
