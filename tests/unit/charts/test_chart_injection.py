"""The operator chart's sidecar injection values (issue 21), as `helm template` renders them."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509

from devstack.controlplane.build import binaries
from refresh_operator.injection.template import template_from_mapping

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "charts" / "config-refresh-operator"
NAMESPACE = "config-refresh"
BASE = [
    "--set",
    "aws.queueUrl=https://sqs.us-east-1.amazonaws.com/123456789012/config-refresh-events",
    "--set",
    "watch.namespaces={team-a,team-b}",
]


def render(*sets: str, check: bool = True) -> list[dict[str, Any]] | str:
    helm = binaries().helm
    if not helm.is_file():
        pytest.fail(f"helm is not built at {helm}: run `make controlplane`", pytrace=False)
    argv = [str(helm), "template", "rel", str(CHART), "--namespace", NAMESPACE, *BASE]
    for item in sets:
        argv += ["--set", item]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    if not check:
        assert result.returncode != 0
        return result.stderr
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def kind(manifests: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [m for m in manifests if m["kind"] == name]


def operator_container(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = kind(manifests, "Deployment")
    container: dict[str, Any] = deployment["spec"]["template"]["spec"]["containers"][0]
    return container


def test_injection_is_off_by_default() -> None:
    manifests = render()
    assert isinstance(manifests, list)
    assert not kind(manifests, "MutatingWebhookConfiguration")
    env = {e["name"] for e in operator_container(manifests)["env"]}
    assert not any(name.startswith("CONFIG_REFRESH_INJECTION_") for name in env)


def test_enabled_injection_renders_the_webhook_its_certificate_and_the_sidecar_template() -> None:
    manifests = render("injection.enabled=true", "injection.image.repository=registry.example/cs")
    assert isinstance(manifests, list)
    (configuration,) = kind(manifests, "MutatingWebhookConfiguration")
    (webhook,) = configuration["webhooks"]
    assert webhook["failurePolicy"] == "Ignore"
    assert webhook["sideEffects"] == "None"
    assert webhook["timeoutSeconds"] == 5
    assert webhook["objectSelector"] == {"matchLabels": {"configrefresh.io/inject": "enabled"}}
    excluded, watched = webhook["namespaceSelector"]["matchExpressions"]
    assert excluded["operator"] == "NotIn"
    assert set(excluded["values"]) == {"kube-system", NAMESPACE}
    assert (watched["operator"], watched["values"]) == ("In", ["team-a", "team-b"])
    assert webhook["rules"][0]["operations"] == ["CREATE"]
    service = webhook["clientConfig"]["service"]
    assert (service["path"], service["port"], service["namespace"]) == ("/inject", 443, NAMESPACE)

    # The caBundle is the CA of the generated Secret, whose certificate names the webhook Service.
    secrets = {s["metadata"]["name"]: s for s in kind(manifests, "Secret")}
    secret = secrets[f"{service['name']}-tls"]
    assert webhook["clientConfig"]["caBundle"] == secret["data"]["ca.crt"]
    certificate = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert f"{service['name']}.{NAMESPACE}.svc" in names.get_values_for_type(x509.DNSName)
    ca = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["ca.crt"]))
    certificate.verify_directly_issued_by(ca)

    (webhook_service,) = [s for s in kind(manifests, "Service") if s["metadata"]["name"] == service["name"]]
    assert webhook_service["spec"]["ports"][0]["targetPort"] == "webhook"
    (policy,) = kind(manifests, "NetworkPolicy")
    assert any(rule["ports"][0]["port"] == "webhook" for rule in policy["spec"]["ingress"])

    container = operator_container(manifests)
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["CONFIG_REFRESH_INJECTION_ENABLED"] == "true"
    assert {p["name"]: p["containerPort"] for p in container["ports"]}["webhook"] == 9443

    # The sidecar template loads in the operator and carries the config-service chart's defaults.
    (config_map,) = kind(manifests, "ConfigMap")
    template = template_from_mapping(json.loads(config_map["data"]["sidecar.json"]))
    service_defaults = yaml.safe_load((ROOT / "charts" / "config-service" / "values.yaml").read_text())
    assert template.image.startswith("registry.example/cs:")
    assert dict(template.security_context) == service_defaults["securityContext"]
    assert dict(template.resources) == service_defaults["resources"]
    assert template.health_port == service_defaults["ports"]["health"]
    assert template.metrics_port == service_defaults["ports"]["metrics"]
    assert template.config_port == service_defaults["ports"]["config"]
    assert template.ttl_seconds == service_defaults["cache"]["ttlSeconds"]
    assert template.refresh_allowed_users == (
        f"system:serviceaccount:{NAMESPACE}:rel-config-refresh-operator",
    )


def test_failure_policy_and_a_user_certificate() -> None:
    manifests = render(
        "injection.enabled=true",
        "injection.failurePolicy=Fail",
        "injection.tls.secretName=my-webhook-tls",
        "injection.tls.certManagerCertificate=config-refresh/my-webhook",
    )
    assert isinstance(manifests, list)
    (configuration,) = kind(manifests, "MutatingWebhookConfiguration")
    assert configuration["webhooks"][0]["failurePolicy"] == "Fail"
    assert configuration["metadata"]["annotations"] == {
        "cert-manager.io/inject-ca-from": "config-refresh/my-webhook"
    }
    assert "caBundle" not in configuration["webhooks"][0]["clientConfig"]
    assert not [s for s in kind(manifests, "Secret") if s["metadata"]["name"].endswith("-webhook-tls")]
    message = render("injection.enabled=true", "injection.tls.secretName=my-webhook-tls", check=False)
    assert "needs injection.tls.caBundle or injection.tls.certManagerCertificate" in str(message)
    refused = render("injection.enabled=true", "injection.failurePolicy=Sometimes", check=False)
    assert "failurePolicy" in str(refused)


def test_with_several_replicas_every_replica_serves_the_webhook_with_the_one_certificate() -> None:
    manifests = render("injection.enabled=true", "replicaCount=3")
    assert isinstance(manifests, list)
    (deployment,) = kind(manifests, "Deployment")
    assert deployment["spec"]["replicas"] == 3
    (configuration,) = kind(manifests, "MutatingWebhookConfiguration")
    (webhook,) = configuration["webhooks"]
    assert (webhook["failurePolicy"], webhook["objectSelector"]) == (
        "Ignore",
        {"matchLabels": {"configrefresh.io/inject": "enabled"}},
    )
    name = webhook["clientConfig"]["service"]["name"]
    # The Service picks any replica: it selects by the pod template's selector labels, nothing per replica.
    (service,) = [s for s in kind(manifests, "Service") if s["metadata"]["name"] == name]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    # Every replica mounts the one Secret whose CA is the caBundle: any replica's certificate verifies.
    pod = deployment["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "webhook-tls"]
    (secret,) = [
        s for s in kind(manifests, "Secret") if s["metadata"]["name"] == volume["secret"]["secretName"]
    ]
    assert webhook["clientConfig"]["caBundle"] == secret["data"]["ca.crt"]
    env = {e["name"]: e.get("value") for e in operator_container(manifests)["env"]}
    assert env["CONFIG_REFRESH_INJECTION_CERT_FILE"].startswith(
        next(
            m["mountPath"]
            for m in operator_container(manifests)["volumeMounts"]
            if m["name"] == "webhook-tls"
        )
    )
