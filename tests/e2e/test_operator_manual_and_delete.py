"""A ConfigRefresh made by hand pushes the current version; a deleted parameter leaves every instance."""

from __future__ import annotations

from typing import TYPE_CHECKING

from devstack.stack.kube import apply

if TYPE_CHECKING:
    from devstack.stack.builder import Stack


def test_a_manual_config_refresh_pushes_the_current_version(stack: Stack) -> None:
    name = f"{stack.local_aws.prefix}orders/manual"
    stack.operator.stop()
    version = stack.put(name, "by-hand")
    stack.sqs.purge_queue(QueueUrl=stack.local_aws.queue_url)
    stack.wait_for(lambda: stack.queue_depth() == (0, 0), timeout=30, what="the event purged")
    stack.operator.start()
    stack.operator.wait_ready()
    apply(
        stack.control_plane,
        stack.namespace,
        {
            "apiVersion": "configrefresh.io/v1alpha1",
            "kind": "ConfigRefresh",
            "metadata": {"name": "push-manual-by-hand"},
            "spec": {"route": stack.route, "parameter": {"name": name}, "source": {"trigger": "manual"}},
        },
    )
    rollout = stack.wait_phase(name, None, {"Succeeded", "PartiallyFailed", "Failed"})
    assert rollout["metadata"]["name"] == "push-manual-by-hand"
    status = rollout["status"]
    assert status["phase"] == "Succeeded", status
    assert (status["refreshed"], status["stale"]) == (10, 0)
    assert {entry["version"] for entry in status["instances"]} == {version}
    assert stack.values(name) == [("by-hand", version)] * 10


def test_deleting_a_parameter_removes_it_from_every_instance(stack: Stack) -> None:
    name = f"{stack.local_aws.prefix}orders/doomed"
    version = stack.put(name, "short-lived")
    stack.wait_phase(name, version, {"Succeeded"})
    assert stack.values(name) == [("short-lived", version)] * 10
    stack.ssm.delete_parameter(Name=name)

    def delete_rollout() -> dict[str, object] | None:
        for item in stack.refreshes_of(name):
            phase = (item.get("status") or {}).get("phase")
            if item["spec"]["parameter"]["operation"] == "Delete" and phase in {
                "Succeeded",
                "PartiallyFailed",
                "Failed",
            }:
                return item
        return None

    rollout = stack.wait_for(delete_rollout, timeout=60, what="the Delete rollout finished")
    assert rollout["status"]["phase"] == "Succeeded", rollout["status"]
    assert stack.values(name) == [("<missing>", 0)] * 10
