"""The local AWS stack provisions what deploy/aws/config-refresh.yaml provisions on real AWS.

The local stack (hack/devstack/aws/provision.py) builds its resources from code, so nothing forces the two
to stay alike. This test reads what the local stack actually provisioned back through the AWS APIs and
compares it with the template at its default parameters: the rule's pattern and target, the queue's
redrive policy and visibility timeout, the queue policy that lets only the rule send, and the Cloud Map
namespace and service with their custom health configuration.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from devstack.aws.local_aws import LocalAws

TEMPLATE = Path(__file__).resolve().parents[2] / "deploy" / "aws" / "config-refresh.yaml"
STACK_NAME = "config-refresh"  # the stack name docs/install-eks.md deploys with


class _TemplateLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short tags read as their long forms (`!Ref X` -> `{"Ref": "X"}`)."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        assert isinstance(node, yaml.MappingNode)
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


_TemplateLoader.add_multi_constructor("!", _intrinsic)


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.load(TEMPLATE.read_text(), Loader=_TemplateLoader)  # noqa: S506
    return loaded


def resolve(value: Any, template: dict[str, Any], refs: dict[str, Any]) -> Any:
    """Evaluate the intrinsics these resources use, with parameter defaults and the given references."""
    if isinstance(value, list):
        return [resolve(item, template, refs) for item in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"Ref"}:
        name = value["Ref"]
        if name in refs:
            return refs[name]
        return template["Parameters"][name]["Default"]
    if set(value) == {"Fn::GetAtt"}:
        return refs[".".join(value["Fn::GetAtt"])]
    if set(value) == {"Fn::Sub"}:
        text: str = value["Fn::Sub"]
        for name, parameter in template["Parameters"].items():
            text = text.replace("${" + name + "}", str(refs.get(name, parameter.get("Default", ""))))
        return text.replace("${AWS::StackName}", STACK_NAME)
    return {key: resolve(item, template, refs) for key, item in value.items()}


def properties(template: dict[str, Any], logical_id: str) -> dict[str, Any]:
    props: dict[str, Any] = template["Resources"][logical_id]["Properties"]
    return props


def test_the_template_defaults_name_what_the_local_stack_uses(
    template: dict[str, Any], local_aws: LocalAws
) -> None:
    parameters = template["Parameters"]
    assert parameters["ParameterPrefix"]["Default"] == local_aws.prefix
    assert parameters["CloudMapNamespaceName"]["Default"] == local_aws.namespace_name
    assert parameters["CloudMapServiceName"]["Default"] == local_aws.service_name
    assert parameters["MaxReceiveCount"]["Default"] == local_aws.max_receive_count
    queue_name = resolve(properties(template, "EventQueue")["QueueName"], template, {})
    assert local_aws.queue_url.endswith("/" + queue_name)
    dlq_name = resolve(properties(template, "DeadLetterQueue")["QueueName"], template, {})
    assert local_aws.dlq_url.endswith("/" + dlq_name)


def test_the_rule_pattern_and_target_agree(template: dict[str, Any], local_aws: LocalAws) -> None:
    events = local_aws.client("events")
    listed = events.list_rules(NamePrefix=local_aws.rule_name)["Rules"]
    assert [rule["Name"] for rule in listed] == [local_aws.rule_name]
    described = events.describe_rule(Name=local_aws.rule_name)
    rule = properties(template, "ParameterChangeRule")
    assert json.loads(described["EventPattern"]) == resolve(rule["EventPattern"], template, {})
    assert described["State"] == rule["State"]
    assert described.get("EventBusName", "default") == rule["EventBusName"]
    targets = events.list_targets_by_rule(Rule=local_aws.rule_name)["Targets"]
    expected = resolve(rule["Targets"], template, {"EventQueue.Arn": local_aws.queue_arn})
    assert [(t["Id"], t["Arn"]) for t in targets] == [(t["Id"], t["Arn"]) for t in expected]


def test_the_redrive_policy_and_visibility_agree(template: dict[str, Any], local_aws: LocalAws) -> None:
    sqs = local_aws.client("sqs")
    attributes = sqs.get_queue_attributes(
        QueueUrl=local_aws.queue_url, AttributeNames=["RedrivePolicy", "VisibilityTimeout"]
    )["Attributes"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=local_aws.dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    queue = properties(template, "EventQueue")
    expected = resolve(queue["RedrivePolicy"], template, {"DeadLetterQueue.Arn": dlq_arn})
    local = json.loads(attributes["RedrivePolicy"])
    assert local["deadLetterTargetArn"] == expected["deadLetterTargetArn"]
    assert int(local["maxReceiveCount"]) == int(expected["maxReceiveCount"])
    assert int(attributes["VisibilityTimeout"]) == int(resolve(queue["VisibilityTimeout"], template, {}))


def test_only_the_rule_may_send_to_the_queue_in_both(template: dict[str, Any], local_aws: LocalAws) -> None:
    sqs = local_aws.client("sqs")
    policy = json.loads(
        sqs.get_queue_attributes(QueueUrl=local_aws.queue_url, AttributeNames=["Policy"])["Attributes"][
            "Policy"
        ]
    )
    rule_arn = local_aws.client("events").describe_rule(Name=local_aws.rule_name)["Arn"]
    refs = {"EventQueue.Arn": local_aws.queue_arn, "ParameterChangeRule.Arn": rule_arn}
    document = resolve(properties(template, "EventQueuePolicy")["PolicyDocument"], template, refs)

    def allows(statements: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return [
            (s["Principal"], s["Action"], s["Resource"], json.dumps(s["Condition"], sort_keys=True))
            for s in statements
            if s["Effect"] == "Allow"
        ]

    assert allows(policy["Statement"]) == allows(document["Statement"])
    assert allows(document["Statement"]) == [
        (
            {"Service": "events.amazonaws.com"},
            "sqs:SendMessage",
            local_aws.queue_arn,
            json.dumps({"ArnEquals": {"aws:SourceArn": rule_arn}}),
        )
    ]


def test_the_cloud_map_namespace_and_health_config_agree(
    template: dict[str, Any], local_aws: LocalAws
) -> None:
    cloudmap = local_aws.client("servicediscovery")
    service = cloudmap.get_service(Id=local_aws.service_id)["Service"]
    expected = properties(template, "CloudMapService")
    assert service["Name"] == resolve(expected["Name"], template, {})
    assert service["NamespaceId"] == local_aws.namespace_id
    assert service.get("HealthCheckCustomConfig") == expected["HealthCheckCustomConfig"]
    assert "HealthCheckConfig" not in service, "health is reported by the operator, not checked by Route 53"
    assert service.get("Type", expected["Type"]) == expected["Type"]
    namespace = cloudmap.get_namespace(Id=local_aws.namespace_id)["Namespace"]
    assert template["Resources"]["CloudMapNamespace"]["Type"] == "AWS::ServiceDiscovery::HttpNamespace"
    assert namespace["Type"] == "HTTP"
    assert namespace["Name"] == resolve(properties(template, "CloudMapNamespace")["Name"], template, {})


def test_an_alarm_watches_the_queue_that_the_redrive_policy_fills(template: dict[str, Any]) -> None:
    resources = template["Resources"]
    redrive_target = resources["EventQueue"]["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]
    dead_letter_queue = redrive_target["Fn::GetAtt"][0]
    alarms = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::CloudWatch::Alarm"]
    watching = [
        alarm
        for alarm in alarms
        if alarm["Namespace"] == "AWS/SQS"
        and {"Name": "QueueName", "Value": {"Fn::GetAtt": [dead_letter_queue, "QueueName"]}}
        in alarm["Dimensions"]
    ]
    assert len(watching) == 1, alarms
    alarm = watching[0]
    # any message at all is worth a look: malformed events, or events an operator died holding
    assert alarm["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 0)
    assert alarm["TreatMissingData"] == "notBreaching"
