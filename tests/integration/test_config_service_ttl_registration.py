"""The TTL safety net against the local Parameter Store, and optional Cloud Map self-registration."""

from __future__ import annotations

import time

from devstack.aws.local_aws import LocalAws
from devstack.fixtures.services import FleetFactory


def test_a_missed_change_is_picked_up_by_the_ttl_reread(
    local_aws: LocalAws, service_fleet: FleetFactory
) -> None:
    ssm = local_aws.client("ssm")
    name = f"{local_aws.prefix}acme/orders/timeout"
    ssm.put_parameter(Name=name, Value="1s", Type="String")
    instance = service_fleet(
        1, local_aws=local_aws, env={"CONFIG_SERVICE_TTL_SECONDS": "1", "CONFIG_SERVICE_TTL_JITTER": "0"}
    )[0]
    ssm.put_parameter(Name=name, Value="2s", Type="String", Overwrite=True)  # no refresh is pushed
    values = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        entry = instance.get_config(name)  # served from the old entry while the re-read runs
        values.append(entry.value)
        if entry.value == "2s":
            break
        time.sleep(0.1)
    assert values[-1] == "2s"
    assert instance.get_config(name).version == 2


def test_ttl_zero_makes_no_parameter_store_calls_while_idle(
    local_aws: LocalAws, service_fleet: FleetFactory
) -> None:
    local_aws.client("ssm").put_parameter(Name=f"{local_aws.prefix}acme/x", Value="1", Type="String")
    instance = service_fleet(1, local_aws=local_aws, env={"CONFIG_SERVICE_TTL_SECONDS": "0"})[0]
    local_aws.reset_call_counts()
    time.sleep(2)
    assert instance.get_config(f"{local_aws.prefix}acme/x").value == "1"
    assert not any(key.startswith("ssm:") for key in local_aws.call_counts())


def test_self_registration_in_cloud_map_and_deregistration_on_sigterm(
    local_aws: LocalAws, service_fleet: FleetFactory
) -> None:
    fleet = service_fleet(
        1,
        local_aws=local_aws,
        env={
            "CONFIG_SERVICE_CLOUDMAP_SERVICE_ID": local_aws.service_id,
            "CONFIG_SERVICE_CLOUDMAP_ATTRIBUTES": "tenant=acme",
        },
    )
    instance = fleet[0]
    discovery = local_aws.client("servicediscovery")

    def registered() -> dict[str, dict[str, str]]:
        listed = discovery.list_instances(ServiceId=local_aws.service_id)["Instances"]
        return {item["Id"]: item["Attributes"] for item in listed}

    deadline = time.monotonic() + 30
    while instance.instance_id not in registered() and time.monotonic() < deadline:
        time.sleep(0.1)
    attributes = registered()[instance.instance_id]
    assert attributes["AWS_INSTANCE_IPV4"] == instance.host
    assert attributes["AWS_INSTANCE_PORT"] == str(instance.refresh_port)
    assert attributes["tenant"] == "acme"
    assert instance.stop() == 0
    assert instance.instance_id not in registered()
