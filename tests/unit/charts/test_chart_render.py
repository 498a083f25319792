"""What `helm template` makes of the two charts, for the value sets a user would pick.

Rendering needs the helm binary of the test control plane (`make controlplane` builds it); without it these
tests fail, they never skip. Nothing here talks to a cluster: tests/e2e/test_chart_install.py installs the
same charts into a real API server.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import tomllib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509

from devstack.controlplane.build import binaries

ROOT = Path(__file__).resolve().parents[3]
OPERATOR_CHART = ROOT / "charts" / "config-refresh-operator"
SERVICE_CHART = ROOT / "charts" / "config-service"
NAMESPACE = "config-refresh"
QUEUE_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/config-refresh-events"
ROLE_ARN = "arn:aws:iam::123456789012:role/config-refresh-operator"
OPERATOR_VERBS = {"get", "list", "watch", "create", "patch", "delete"}

Manifest = dict[str, Any]


def helm() -> Path:
    path = binaries().helm
    if not path.is_file():
        pytest.fail(f"helm is not built at {path}: run `make controlplane`", pytrace=False)
    return path


def render_result(chart: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [str(helm()), "template", "rel", str(chart), "--namespace", NAMESPACE, *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


def render(chart: Path, *args: str) -> list[Manifest]:
    result = render_result(chart, *args)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def render_operator(*sets: str) -> list[Manifest]:
    args = ["--set", f"aws.queueUrl={QUEUE_URL}", "--set", f"serviceAccount.roleArn={ROLE_ARN}"]
    for item in sets:
        args += ["--set", item]
    return render(OPERATOR_CHART, *args)


def of_kind(manifests: Sequence[Manifest], kind: str) -> list[Manifest]:
    return [m for m in manifests if m["kind"] == kind]


def is_user_role(role: Manifest) -> bool:
    labels = role["metadata"].get("labels") or {}
    return bool(labels.get("app.kubernetes.io/component") == "user-role")


def watch_roles(manifests: Sequence[Manifest], kind: str) -> list[Manifest]:
    """The operator's roles for watching, without the user roles and the TokenRequest role."""
    return [
        m
        for m in of_kind(manifests, kind)
        if not is_user_role(m) and not m["metadata"]["name"].endswith("-token")
    ]


def one(manifests: Sequence[Manifest], kind: str) -> Manifest:
    found = of_kind(manifests, kind)
    assert len(found) == 1, f"expected one {kind}, got {[m['metadata']['name'] for m in found]}"
    return found[0]


def rules(role: Manifest) -> Iterator[tuple[str, str, str]]:
    """(apiGroup, resource, verb) for every combination a role grants."""
    for rule in role.get("rules", []):
        for group in rule.get("apiGroups", []):
            for resource in rule.get("resources", []):
                for verb in rule.get("verbs", []):
                    yield group, resource, verb


def granted(role: Manifest) -> set[tuple[str, str, str]]:
    return set(rules(role))


def container(manifests: Sequence[Manifest]) -> Manifest:
    containers = one(manifests, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def value_sets(chart: Path) -> list[Path]:
    return sorted((chart / "ci").glob("*-values.yaml"))


ALL_SETS = [(OPERATOR_CHART, path) for path in value_sets(OPERATOR_CHART)] + [
    (SERVICE_CHART, path) for path in value_sets(SERVICE_CHART)
]


@pytest.fixture(params=ALL_SETS, ids=lambda p: f"{p[0].name}:{p[1].stem}")
def rendered_set(request: pytest.FixtureRequest) -> list[Manifest]:
    chart, values = request.param
    return render(chart, "--values", str(values))


def test_every_value_set_runs_as_non_root_with_a_read_only_root_and_no_capabilities(
    rendered_set: list[Manifest],
) -> None:
    pod = one(rendered_set, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    security = container(rendered_set)["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert security["runAsUser"] > 0
    mounts = {m["mountPath"]: m["name"] for m in container(rendered_set)["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]], "a read-only root needs a writable /tmp"


def test_every_value_set_sets_resources_and_probes(rendered_set: list[Manifest]) -> None:
    main = container(rendered_set)
    assert main["resources"]["requests"]
    assert main["resources"]["limits"]
    assert "livenessProbe" in main
    assert "readinessProbe" in main


def test_no_value_set_grants_secrets_wildcards_or_writes_to_pods(rendered_set: list[Manifest]) -> None:
    roles = of_kind(rendered_set, "Role") + of_kind(rendered_set, "ClusterRole")
    for role in roles:
        for group, resource, verb in rules(role):
            assert "*" not in (group, resource, verb), role["metadata"]["name"]
            assert resource != "secrets", f"{role['metadata']['name']} grants {verb} on secrets"
            if resource == "pods":
                assert verb in {"list", "watch"}
            if not is_user_role(role):  # roles for people, bound by the admin, never to the operator
                assert verb in OPERATOR_VERBS, f"{role['metadata']['name']} grants {verb} on {resource}"


def test_the_default_install_is_one_standalone_replica_watching_its_namespace() -> None:
    manifests = render_operator()
    deployment = one(manifests, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    # never two standalone operators at once, not even during an upgrade (kopf's deployment advice)
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    env = {e["name"] for e in container(manifests)["env"]}
    assert "CONFIG_REFRESH_PEERING_LIFETIME_SECONDS" not in env
    args = container(manifests)["args"]
    assert "--standalone" in args
    assert "--peering" not in args
    assert args[args.index("--namespace") + 1] == NAMESPACE
    assert "--liveness" in args
    assert args[args.index("--liveness") + 1] == "http://0.0.0.0:8080/healthz"
    assert "command" not in container(manifests)
    assert not of_kind(manifests, "KopfPeering")
    assert not of_kind(manifests, "ClusterKopfPeering")


def test_the_service_account_carries_the_irsa_role() -> None:
    account = one(render_operator(), "ServiceAccount")
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == ROLE_ARN
    pod = one(render_operator(), "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account["metadata"]["name"]


def test_settings_reach_the_operator_as_its_environment_variables() -> None:
    env = {e["name"]: e.get("value") for e in container(render_operator("aws.region=eu-west-1"))["env"]}
    assert env["CONFIG_REFRESH_QUEUE_URL"] == QUEUE_URL
    assert env["AWS_REGION"] == "eu-west-1"
    assert env["CONFIG_REFRESH_METRICS_PORT"] == "9090"
    assert env["CONFIG_REFRESH_RETENTION_SECONDS"] == "604800"
    assert "CONFIG_REFRESH_AWS_ENDPOINT_URL" not in env


def test_the_operator_settings_loader_accepts_the_rendered_environment() -> None:
    """The chart's env block, fed to the operator's own settings loader (files it names aside)."""
    from refresh_operator.settings import load_settings

    env = {
        e["name"]: e["value"]
        for e in container(render_operator("refreshAuth.serviceAccountToken.enabled=false"))["env"]
        if "value" in e
    }
    settings = load_settings(env)
    assert settings.queue_url == QUEUE_URL
    assert settings.region == "us-east-1"
    assert settings.metrics_port == 9090
    assert settings.max_channels == 2000
    assert settings.channel_idle_seconds == 600.0


def test_the_channel_idle_time_is_a_chart_value() -> None:
    from refresh_operator.settings import load_settings

    rendered = render_operator(
        "refreshes.channelIdleSeconds=90", "refreshAuth.serviceAccountToken.enabled=false"
    )
    env = {e["name"]: e["value"] for e in container(rendered)["env"] if "value" in e}
    assert load_settings(env).channel_idle_seconds == 90.0


def test_a_missing_queue_url_fails_the_render_with_a_message_naming_it() -> None:
    result = render_result(OPERATOR_CHART)
    assert result.returncode != 0
    assert "aws.queueUrl is required" in result.stderr


def test_namespaced_mode_grants_a_role_per_watched_namespace_and_nothing_namespaced_cluster_wide() -> None:
    manifests = render_operator("watch.namespaces={team-a,team-b}")
    roles = {r["metadata"]["namespace"]: r for r in watch_roles(manifests, "Role")}
    bindings = {b["metadata"]["namespace"]: b for b in watch_roles(manifests, "RoleBinding")}
    assert set(roles) == set(bindings) == {"team-a", "team-b"}
    for role in roles.values():
        assert ("configrefresh.io", "configrefreshes", "create") in granted(role)
        assert ("configrefresh.io", "configrefreshes/status", "patch") in granted(role)
        assert ("configrefresh.io", "configroutes/status", "patch") in granted(role)
        assert ("", "events", "create") in granted(role)
        assert ("", "pods", "watch") in granted(role)
    for binding in bindings.values():
        assert binding["subjects"][0]["namespace"] == NAMESPACE
    cluster_role = one(watch_roles(manifests, "ClusterRole"), "ClusterRole")
    assert {group for group, _, _ in rules(cluster_role)} == {"apiextensions.k8s.io", ""}
    assert {resource for _, resource, _ in rules(cluster_role)} == {"customresourcedefinitions", "namespaces"}
    assert {verb for _, _, verb in rules(cluster_role)} == {"list", "watch"}
    args = container(manifests)["args"]
    assert [args[i + 1] for i, a in enumerate(args) if a == "--namespace"] == ["team-a", "team-b"]


def test_cluster_wide_mode_is_one_cluster_role_and_no_roles() -> None:
    manifests = render_operator("watch.clusterWide=true")
    assert not watch_roles(manifests, "Role")
    assert not watch_roles(manifests, "RoleBinding")
    cluster_role = granted(one(watch_roles(manifests, "ClusterRole"), "ClusterRole"))
    assert ("configrefresh.io", "configrefreshes", "delete") in cluster_role
    assert ("", "namespaces", "list") not in cluster_role, "kopf does not scan namespaces cluster-wide"
    args = container(manifests)["args"]
    assert "--all-namespaces" in args
    assert "--namespace" not in args


def test_pods_are_not_readable_when_pod_sync_is_off() -> None:
    manifests = render_operator("podSync.enabled=false")
    role = one(watch_roles(manifests, "Role"), "Role")
    assert not any(resource == "pods" for _, resource, _ in rules(role))
    env = {e["name"]: e.get("value") for e in container(manifests)["env"]}
    assert env["CONFIG_REFRESH_POD_SYNC"] == "false"


@pytest.mark.parametrize(
    ("sets", "peering_kind", "peering_resource"),
    [
        (("replicaCount=2",), "KopfPeering", "kopfpeerings"),
        (("replicaCount=3", "watch.clusterWide=true"), "ClusterKopfPeering", "clusterkopfpeerings"),
    ],
)
def test_more_than_one_replica_turns_peering_on_consistently(
    sets: tuple[str, ...], peering_kind: str, peering_resource: str
) -> None:
    manifests = render_operator(*sets)
    deployment = one(manifests, "Deployment")
    # An upgrade starts one new pod before it stops an old one: a replica is always running and kopf
    # peering decides which one is active.
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
    }
    budget = one(manifests, "PodDisruptionBudget")
    assert budget["spec"]["maxUnavailable"] < deployment["spec"]["replicas"], "a drain keeps one replica"
    main = container(manifests)
    env = {e["name"]: e.get("value") for e in main["env"]}
    assert env["CONFIG_REFRESH_PEERING_LIFETIME_SECONDS"] == "60"
    assert "--standalone" not in main["args"]
    peering_name = main["args"][main["args"].index("--peering") + 1]
    assert one(manifests, peering_kind)["metadata"]["name"] == peering_name
    assert "--priority" in main["command"][2], "replicas need distinct priorities or all of them pause"
    roles = of_kind(manifests, "Role") + of_kind(manifests, "ClusterRole")
    assert any(("kopf.dev", peering_resource, "patch") in granted(role) for role in roles)


def test_a_budget_that_lets_every_peering_replica_go_at_once_is_refused() -> None:
    result = render_result(
        OPERATOR_CHART,
        "--set",
        f"aws.queueUrl={QUEUE_URL}",
        "--set",
        "replicaCount=2",
        "--set",
        "podDisruptionBudget.maxUnavailable=2",
    )
    assert result.returncode != 0
    assert "podDisruptionBudget.maxUnavailable must be below replicaCount" in result.stderr
    budget = one(
        render_operator("replicaCount=2", "podDisruptionBudget.maxUnavailable=1"), "PodDisruptionBudget"
    )
    assert budget["spec"]["maxUnavailable"] == 1


def test_one_replica_grants_no_peering_access() -> None:
    manifests = render_operator("watch.clusterWide=true")
    for role in of_kind(manifests, "Role") + of_kind(manifests, "ClusterRole"):
        assert not any(group == "kopf.dev" for group, _, _ in rules(role))


def test_the_image_tag_defaults_to_the_project_version() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    for chart in (OPERATOR_CHART, SERVICE_CHART):
        chart_yaml = yaml.safe_load((chart / "Chart.yaml").read_text())
        assert chart_yaml["appVersion"] == version
    assert container(render_operator())["image"] == f"config-refresh-operator:{version}"
    digest = "sha256:" + "a" * 64
    pinned = render_operator(f"image.digest={digest}")
    assert container(pinned)["image"] == f"config-refresh-operator@{digest}"
    assert "checkov.io/skip2" not in one(pinned, "Deployment")["metadata"]["annotations"]


def test_config_service_token_review_mode_can_review_tokens_and_nothing_else() -> None:
    manifests = render(SERVICE_CHART)
    binding = one(manifests, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == "system:auth-delegator"
    assert not of_kind(manifests, "Role")
    assert not of_kind(manifests, "ClusterRole")
    pod = one(manifests, "Deployment")["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is True
    env = {e["name"]: e.get("value") for e in container(manifests)["env"]}
    assert env["CONFIG_SERVICE_TOKENREVIEW_AUDIENCE"] == "configrefresh.io/config-refresh/config-service"
    assert env["CONFIG_SERVICE_HOST"] == "0.0.0.0"
    route = one(manifests, "ConfigRoute")["spec"]
    assert route["refresh"]["auth"] == {
        "type": "serviceAccountToken",
        "audience": "configrefresh.io/config-refresh/config-service",
    }


def test_config_service_token_mode_mounts_the_secret_and_no_api_token() -> None:
    manifests = render(SERVICE_CHART, "--values", str(SERVICE_CHART / "ci" / "token-values.yaml"))
    assert not of_kind(manifests, "ClusterRoleBinding")
    pod = one(manifests, "Deployment")["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    secrets = {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    assert secrets == {"config-service-refresh-tokens", "config-service-read-tokens", "config-service-tls"}
    env = {e["name"]: e.get("value") for e in container(manifests)["env"]}
    assert env["CONFIG_SERVICE_CONFIG_TOKEN_FILE"] == "/etc/config-service/config-token/tokens"
    assert "CONFIG_SERVICE_TOKENREVIEW_AUDIENCE" not in env
    route = one(manifests, "ConfigRoute")["spec"]
    assert route["refresh"]["auth"]["type"] == "bearerToken"
    assert route["refresh"]["tls"]["enabled"] is True
    assert not of_kind(manifests, "Secret"), "the user's Secret is served, none is generated"


def test_config_service_route_syncs_exactly_its_own_pods_on_the_refresh_port() -> None:
    manifests = render(SERVICE_CHART, "--values", str(SERVICE_CHART / "ci" / "mtls-values.yaml"))
    route = one(manifests, "ConfigRoute")["spec"]
    pod_labels = one(manifests, "Deployment")["spec"]["template"]["metadata"]["labels"]
    selector = route["podSync"]["selector"]["matchLabels"]
    assert selector.items() <= pod_labels.items()
    refresh_port = next(p for p in container(manifests)["ports"] if p["name"] == "refresh")
    assert route["podSync"]["port"] == route["refresh"]["port"] == refresh_port["containerPort"]
    assert route["parameterPrefix"] == "/config-service/"
    assert route["discovery"]["cloudMap"]["queryParameters"] == {"tenant": "{tenant}"}


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (("refreshAuth.mode=token",), "refreshAuth.token.secretName"),
        (("refreshAuth.mode=mtls",), "refreshAuth.mtls.clientCaSecretName"),
        (("refreshAuth.mode=oauth",), "/refreshAuth/mode"),
        (("configApi.mode=token",), "configApi.token.secretName"),
        (("configApi.mode=mtls",), "configApi.mtls.clientCaSecretName"),
        (("configApi.mode=none",), "/configApi/mode"),
        (("tls.insecurePlaintext=true",), "use configApi.mode=loopback"),
        (
            (
                "tls.insecurePlaintext=true",
                "configApi.mode=loopback",
                "refreshAuth.mode=mtls",
                "refreshAuth.mtls.clientCaSecretName=ca",
                "refreshAuth.mtls.allowedIdentities={op}",
            ),
            "refreshAuth.mode=mtls needs TLS",
        ),
    ],
)
def test_config_service_refuses_an_incomplete_auth_setup(sets: tuple[str, ...], message: str) -> None:
    args = [arg for item in sets for arg in ("--set", item)]
    result = render_result(SERVICE_CHART, *args)
    assert result.returncode != 0
    assert message in result.stderr


def test_values_are_documented_exemplified_and_in_the_schema() -> None:
    """hack/gen-values-table.py --check: `# --` on every key, examples, schema, docs table up to date."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "hack" / "gen-values-table.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("chart", [OPERATOR_CHART, SERVICE_CHART], ids=lambda p: p.name)
def test_the_schema_rejects_unknown_keys(chart: Path) -> None:
    extra = ["--set", f"aws.queueUrl={QUEUE_URL}"] if chart == OPERATOR_CHART else []
    result = render_result(chart, *extra, "--set", "replicas=3")
    assert result.returncode != 0
    assert "replicas" in result.stderr


def test_the_chart_crds_are_the_files_in_crds() -> None:
    """hack/check-chart-crds.sh passes, and what Helm reads through the chart's links is crds/ verbatim."""
    check = subprocess.run(
        [str(ROOT / "hack" / "check-chart-crds.sh")], capture_output=True, text=True, timeout=60, check=False
    )
    assert check.returncode == 0, check.stderr
    argv = [str(helm()), "show", "crds", str(OPERATOR_CHART)]
    shown = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True).stdout
    for source in sorted((ROOT / "crds").glob("*.yaml")):
        assert source.read_text().strip() in shown, f"helm does not serve {source.name} as it is in crds/"


def _decoded_pem(data: str) -> str:
    return base64.b64decode(data).decode()


def test_config_service_serves_tls_by_default_with_a_generated_ca_the_route_trusts() -> None:
    manifests = render(SERVICE_CHART)
    secret = one(manifests, "Secret")
    assert secret["type"] == "kubernetes.io/tls"
    assert secret["metadata"]["name"] == "rel-config-service-tls"
    route = one(manifests, "ConfigRoute")["spec"]["refresh"]
    assert route["tls"]["enabled"] is True
    assert route["tls"]["serverName"] == "rel-config-service.config-refresh.svc"
    assert route["tls"]["caBundle"] == secret["data"]["ca.crt"], "the route trusts exactly the chart's CA"
    assert route["payload"] == "value"
    ca = x509.load_pem_x509_certificate(_decoded_pem(secret["data"]["ca.crt"]).encode())
    leaf = x509.load_pem_x509_certificate(_decoded_pem(secret["data"]["tls.crt"]).encode())
    assert leaf.issuer == ca.subject
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(sans.get_values_for_type(x509.DNSName)) >= {
        "rel-config-service.config-refresh.svc",
        "rel-config-service.config-refresh.svc.cluster.local",
    }
    env = {e["name"]: e.get("value") for e in container(manifests)["env"]}
    for key in ("REFRESH", "CONFIG"):
        assert env[f"CONFIG_SERVICE_{key}_TLS_CERT_FILE"] == "/etc/config-service/tls/tls.crt"
    assert "CONFIG_SERVICE_INSECURE_REFRESH" not in env
    assert "CONFIG_SERVICE_INSECURE_CONFIG_API" not in env
    assert "CONFIG_SERVICE_INSECURE_PLAINTEXT_TOKENS" not in env
    # kubelet gRPC probes cannot speak TLS: they use the plaintext health-only port.
    probes = container(manifests)
    assert probes["readinessProbe"]["grpc"]["port"] == int(env["CONFIG_SERVICE_HEALTH_PORT"])
    assert probes["livenessProbe"]["tcpSocket"]["port"] == "health"


def test_config_service_reads_need_a_serviceaccount_of_the_release_namespace_by_default() -> None:
    manifests = render(SERVICE_CHART)
    env = {e["name"]: e.get("value") for e in container(manifests)["env"]}
    assert env["CONFIG_SERVICE_CONFIG_TOKENREVIEW_ALLOWED_GROUPS"] == "system:serviceaccounts:config-refresh"
    assert "CONFIG_SERVICE_CONFIG_HOST" not in env
    named = render(
        SERVICE_CHART,
        "--set",
        "configApi.serviceAccountToken.allowedUsers={system:serviceaccount:apps:orders}",
    )
    env = {e["name"]: e.get("value") for e in container(named)["env"]}
    assert env["CONFIG_SERVICE_CONFIG_TOKENREVIEW_ALLOWED_USERS"] == "system:serviceaccount:apps:orders"
    assert "CONFIG_SERVICE_CONFIG_TOKENREVIEW_ALLOWED_GROUPS" not in env, (
        "naming clients replaces the default"
    )


def test_config_service_network_policy_admits_the_config_port_from_the_release_namespace_only() -> None:
    policy = one(render(SERVICE_CHART), "NetworkPolicy")["spec"]
    config_rules = [r for r in policy["ingress"] if {"port": "config", "protocol": "TCP"} in r["ports"]]
    assert len(config_rules) == 1
    assert config_rules[0]["from"] == [{"podSelector": {}}]
    clients = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "apps"}}}]
    named = one(
        render(
            SERVICE_CHART,
            "--set-json",
            f"networkPolicy.configFrom={json.dumps(clients)}",
        ),
        "NetworkPolicy",
    )["spec"]
    config_rules = [r for r in named["ingress"] if {"port": "config", "protocol": "TCP"} in r["ports"]]
    assert config_rules[0]["from"] == clients


def test_config_service_plaintext_opt_out_sends_invalidations_without_a_token_and_reads_on_loopback() -> None:
    manifests = render(
        SERVICE_CHART, "--set", "tls.insecurePlaintext=true", "--set", "configApi.mode=loopback"
    )
    assert not of_kind(manifests, "Secret")
    route = one(manifests, "ConfigRoute")["spec"]["refresh"]
    assert route["tls"] == {"enabled": False}
    assert route["auth"] == {"type": "none"}
    assert route["payload"] == "invalidate"
    env = {e["name"]: e.get("value") for e in container(manifests)["env"]}
    assert env["CONFIG_SERVICE_CONFIG_HOST"] == "127.0.0.1"
    assert env["CONFIG_SERVICE_REFRESH_ACCEPT_VALUES"] == "false", "the service refuses pushed values too"
    assert env["CONFIG_SERVICE_INSECURE_REFRESH"] == "true"
    assert not any(k.endswith("_TLS_CERT_FILE") for k in env)
    assert not of_kind(manifests, "ClusterRoleBinding"), "no TokenReview, no API access"
    policy = one(manifests, "NetworkPolicy")["spec"]
    assert not [r for r in policy["ingress"] if {"port": "config", "protocol": "TCP"} in r["ports"]]
    tokens = render(
        SERVICE_CHART,
        "--set",
        "tls.insecurePlaintext=true",
        "--set",
        "tls.insecurePlaintextTokens=true",
        "--set",
        "configRoute.payload=value",
    )
    route = one(tokens, "ConfigRoute")["spec"]["refresh"]
    assert route["auth"]["type"] == "serviceAccountToken"
    env = {e["name"]: e.get("value") for e in container(tokens)["env"]}
    assert env["CONFIG_SERVICE_INSECURE_PLAINTEXT_TOKENS"] == "true"


def test_config_service_cert_manager_path_issues_a_ca_and_a_serving_certificate() -> None:
    manifests = render(SERVICE_CHART, "--set", "tls.certManager.enabled=true")
    assert not of_kind(manifests, "Secret"), "cert-manager writes the Secret"
    certificates = {c["metadata"]["name"]: c["spec"] for c in of_kind(manifests, "Certificate")}
    assert certificates["rel-config-service-ca"]["isCA"] is True
    serving = certificates["rel-config-service-tls"]
    assert serving["secretName"] == "rel-config-service-tls"
    assert serving["issuerRef"] == {"kind": "Issuer", "name": "rel-config-service-ca"}
    assert "rel-config-service.config-refresh.svc" in serving["dnsNames"]
    route = one(manifests, "ConfigRoute")["spec"]["refresh"]
    assert route["tls"]["enabled"] is True
    assert "caBundle" not in route["tls"], "not known before cert-manager issued it (helm upgrade fills it)"
    external = render(
        SERVICE_CHART,
        "--set",
        "tls.certManager.enabled=true",
        "--set",
        "tls.certManager.issuerRef.kind=ClusterIssuer",
        "--set",
        "tls.certManager.issuerRef.name=internal-ca",
    )
    assert [c["metadata"]["name"] for c in of_kind(external, "Certificate")] == ["rel-config-service-tls"]
    assert not of_kind(external, "Issuer")


def test_config_service_audience_follows_the_cloud_map_service_unless_set() -> None:
    manifests = render(
        SERVICE_CHART,
        "--set",
        "configRoute.cloudMap.namespace=prod",
        "--set",
        "configRoute.cloudMap.service=orders",
    )
    env = {e["name"]: e.get("value") for e in container(manifests)["env"]}
    route = one(manifests, "ConfigRoute")["spec"]["refresh"]
    assert (
        env["CONFIG_SERVICE_TOKENREVIEW_AUDIENCE"]
        == route["auth"]["audience"]
        == "configrefresh.io/prod/orders"
    )
    custom = render(SERVICE_CHART, "--set", "refreshAuth.serviceAccountToken.audience=orders.example")
    assert one(custom, "ConfigRoute")["spec"]["refresh"]["auth"]["audience"] == "orders.example"


def test_the_editor_role_is_aggregated_into_edit_only_when_asked() -> None:
    def editor(*sets: str) -> Manifest:
        roles = of_kind(render_operator(*sets), "ClusterRole")
        return next(r for r in roles if r["metadata"]["name"].endswith("-editor"))

    labels = editor()["metadata"]["labels"]
    assert "rbac.authorization.k8s.io/aggregate-to-edit" not in labels
    assert "rbac.authorization.k8s.io/aggregate-to-admin" not in labels
    on = editor("rbac.userRoles.aggregateEditorToEdit=true")["metadata"]["labels"]
    assert on["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"


def test_the_operator_may_mint_tokens_only_for_its_own_service_account() -> None:
    rendered = render_operator()
    role = next(r for r in of_kind(rendered, "Role") if r["metadata"]["name"].endswith("-token"))
    assert role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["serviceaccounts/token"],
            "resourceNames": [one(rendered, "ServiceAccount")["metadata"]["name"]],
            "verbs": ["create"],
        }
    ]
    container = one(rendered, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["CONFIG_REFRESH_SERVICE_ACCOUNT_NAME"] == one(rendered, "ServiceAccount")["metadata"]["name"]
    assert env["CONFIG_REFRESH_ROUTING_UNRESTRICTED"] == "false"
    assert env["CONFIG_REFRESH_ALLOWED_PREFIXES"] == "{}"


def test_config_service_instances_register_as_owned_by_their_namespace() -> None:
    env = {e["name"]: e for e in container(render(SERVICE_CHART))["env"]}
    assert env["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}


@pytest.mark.parametrize("wait", [20, 5])
def test_the_operator_grace_period_outlasts_the_long_poll_a_clean_stop_waits_for(wait: int) -> None:
    """SIGTERM: the operator exits 0 once the SQS long poll in flight returns (19.7 s measured with the
    default 20 s in tests/e2e/test_images.py); the kubelet must not kill it before."""
    deployment = one(render_operator(f"queue.waitTimeSeconds={wait}"), "Deployment")
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == wait + 30
