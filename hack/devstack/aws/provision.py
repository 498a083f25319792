"""Create the AWS resources a change travels through, against the local endpoint, idempotently.

The same shape deploy/aws/ gives real AWS: an SQS queue whose redrive policy moves a message to a DLQ
after `max_receive_count` receives; the EventBridge rule on the default bus that matches Parameter Store
changes under a name prefix and targets the queue; the queue policy that lets EventBridge (and only
this rule) send; a Cloud Map HTTP namespace and a service with a custom health check. Running it twice
creates nothing new, so it is safe after every reset and on every `hack/local-aws up`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

QUEUE_NAME = "config-refresh-events"
DLQ_NAME = "config-refresh-events-dlq"
RULE_NAME = "config-refresh-parameter-changes"
TARGET_ID = "config-refresh-queue"
NAMESPACE_NAME = "config-refresh"
SERVICE_NAME = "config-service"


@dataclass(frozen=True)
class Provisioned:
    """Names, URLs, ARNs and ids of the provisioned resources."""

    queue_url: str
    queue_arn: str
    dlq_url: str
    dlq_arn: str
    rule_name: str
    rule_arn: str
    namespace_name: str
    namespace_id: str
    service_name: str
    service_id: str


def event_pattern(prefix: str) -> dict[str, Any]:
    """The rule's pattern: Parameter Store changes whose name starts with `prefix`."""
    return {
        "source": ["aws.ssm"],
        "detail-type": ["Parameter Store Change"],
        "detail": {"name": [{"prefix": prefix}]},
    }


def provision(
    client: Callable[[str], Any],
    *,
    prefix: str,
    max_receive_count: int,
    visibility_timeout: int,
) -> Provisioned:
    """Create (or find) every resource; `client(service)` returns a boto3 client for the endpoint."""
    sqs, events, cloudmap = client("sqs"), client("events"), client("servicediscovery")

    dlq_url = sqs.create_queue(QueueName=DLQ_NAME)["QueueUrl"]
    dlq_arn = _queue_arn(sqs, dlq_url)
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive_count})
    queue_url = sqs.create_queue(QueueName=QUEUE_NAME)["QueueUrl"]
    sqs.set_queue_attributes(
        QueueUrl=queue_url,
        Attributes={"RedrivePolicy": redrive, "VisibilityTimeout": str(visibility_timeout)},
    )
    queue_arn = _queue_arn(sqs, queue_url)

    rule_arn = events.put_rule(
        Name=RULE_NAME,
        EventPattern=json.dumps(event_pattern(prefix)),
        State="ENABLED",
        Description="Parameter Store changes under the config-refresh prefix",
    )["RuleArn"]
    events.put_targets(Rule=RULE_NAME, Targets=[{"Id": TARGET_ID, "Arn": queue_arn}])
    sqs.set_queue_attributes(
        QueueUrl=queue_url, Attributes={"Policy": json.dumps(queue_policy(queue_arn, rule_arn))}
    )

    namespace_id = _http_namespace(cloudmap, NAMESPACE_NAME)
    service_id = _service(cloudmap, namespace_id, SERVICE_NAME)
    return Provisioned(
        queue_url=queue_url,
        queue_arn=queue_arn,
        dlq_url=dlq_url,
        dlq_arn=dlq_arn,
        rule_name=RULE_NAME,
        rule_arn=rule_arn,
        namespace_name=NAMESPACE_NAME,
        namespace_id=namespace_id,
        service_name=SERVICE_NAME,
        service_id=service_id,
    )


def queue_policy(queue_arn: str, rule_arn: str) -> dict[str, Any]:
    """EventBridge may send to the queue, on behalf of this rule only."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "AllowParameterChangeRule",
                "Effect": "Allow",
                "Principal": {"Service": "events.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": rule_arn}},
            }
        ],
    }


def _queue_arn(sqs: Any, queue_url: str) -> str:
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]
    return str(attributes["QueueArn"])


def _http_namespace(cloudmap: Any, name: str) -> str:
    for page in cloudmap.get_paginator("list_namespaces").paginate():
        for namespace in page["Namespaces"]:
            if namespace["Name"] == name and namespace["Type"] == "HTTP":
                return str(namespace["Id"])
    operation_id = cloudmap.create_http_namespace(Name=name, Description="config-refresh local stack")[
        "OperationId"
    ]
    operation = cloudmap.get_operation(OperationId=operation_id)["Operation"]
    return str(operation["Targets"]["NAMESPACE"])


def _service(cloudmap: Any, namespace_id: str, name: str) -> str:
    filters = [{"Name": "NAMESPACE_ID", "Values": [namespace_id], "Condition": "EQ"}]
    for page in cloudmap.get_paginator("list_services").paginate(Filters=filters):
        for service in page["Services"]:
            if service["Name"] == name:
                return str(service["Id"])
    service = cloudmap.create_service(
        Name=name,
        NamespaceId=namespace_id,
        Type="HTTP",
        HealthCheckCustomConfig={"FailureThreshold": 1},
        Description="config_service instances, health reported by the operator",
    )["Service"]
    return str(service["Id"])
