"""What `helm template` makes of the two charts, for the value sets a user would pick.

Rendering needs the helm binary of the test control plane (`make controlplane` builds it); without it these
tests fail, they never skip. Nothing here talks to a cluster: tests/e2e/test_chart_install.py installs the
same charts into a real API server.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from devstack.controlplane_build import binaries

ROOT = Path(__file__).resolve().parents[2]
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
            assert verb in OPERATOR_VERBS, f"{role['metadata']['name']} grants {verb} on {resource}"


def test_the_default_install_is_one_standalone_replica_watching_its_namespace() -> None:
    manifests = render_operator()
    deployment = one(manifests, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert "strategy" not in deployment["spec"]
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


def test_a_missing_queue_url_fails_the_render_with_a_message_naming_it() -> None:
    result = render_result(OPERATOR_CHART)
    assert result.returncode != 0
    assert "aws.queueUrl is required" in result.stderr


def test_namespaced_mode_grants_a_role_per_watched_namespace_and_nothing_namespaced_cluster_wide() -> None:
    manifests = render_operator("watch.namespaces={team-a,team-b}")
    roles = {r["metadata"]["namespace"]: r for r in of_kind(manifests, "Role")}
    bindings = {b["metadata"]["namespace"]: b for b in of_kind(manifests, "RoleBinding")}
    assert set(roles) == set(bindings) == {"team-a", "team-b"}
    for role in roles.values():
        assert ("configrefresh.io", "configrefreshes", "create") in granted(role)
        assert ("configrefresh.io", "configrefreshes/status", "patch") in granted(role)
        assert ("configrefresh.io", "configroutes/status", "patch") in granted(role)
        assert ("", "events", "create") in granted(role)
        assert ("", "pods", "watch") in granted(role)
    for binding in bindings.values():
        assert binding["subjects"][0]["namespace"] == NAMESPACE
    cluster_role = one(manifests, "ClusterRole")
    assert {group for group, _, _ in rules(cluster_role)} == {"apiextensions.k8s.io", ""}
    assert {resource for _, resource, _ in rules(cluster_role)} == {"customresourcedefinitions", "namespaces"}
    assert {verb for _, _, verb in rules(cluster_role)} == {"list", "watch"}
    args = container(manifests)["args"]
    assert [args[i + 1] for i, a in enumerate(args) if a == "--namespace"] == ["team-a", "team-b"]


def test_cluster_wide_mode_is_one_cluster_role_and_no_roles() -> None:
    manifests = render_operator("watch.clusterWide=true")
    assert not of_kind(manifests, "Role")
    assert not of_kind(manifests, "RoleBinding")
    cluster_role = granted(one(manifests, "ClusterRole"))
    assert ("configrefresh.io", "configrefreshes", "delete") in cluster_role
    assert ("", "namespaces", "list") not in cluster_role, "kopf does not scan namespaces cluster-wide"
    args = container(manifests)["args"]
    assert "--all-namespaces" in args
    assert "--namespace" not in args


def test_pods_are_not_readable_when_pod_sync_is_off() -> None:
    manifests = render_operator("podSync.enabled=false")
    assert not any(resource == "pods" for _, resource, _ in rules(one(manifests, "Role")))
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
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    main = container(manifests)
    assert "--standalone" not in main["args"]
    peering_name = main["args"][main["args"].index("--peering") + 1]
    assert one(manifests, peering_kind)["metadata"]["name"] == peering_name
    assert "--priority" in main["command"][2], "replicas need distinct priorities or all of them pause"
    roles = of_kind(manifests, "Role") + of_kind(manifests, "ClusterRole")
    assert any(("kopf.dev", peering_resource, "patch") in granted(role) for role in roles)


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
    assert env["CONFIG_SERVICE_TOKENREVIEW_AUDIENCE"] == "config-service"
    assert env["CONFIG_SERVICE_HOST"] == "0.0.0.0"
    route = one(manifests, "ConfigRoute")["spec"]
    assert route["refresh"]["auth"]["type"] == "serviceAccountToken"


def test_config_service_token_mode_mounts_the_secret_and_no_api_token() -> None:
    manifests = render(SERVICE_CHART, "--values", str(SERVICE_CHART / "ci" / "token-values.yaml"))
    assert not of_kind(manifests, "ClusterRoleBinding")
    pod = one(manifests, "Deployment")["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    secrets = {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    assert secrets == {"config-service-refresh-tokens", "config-service-refresh-tls"}
    route = one(manifests, "ConfigRoute")["spec"]
    assert route["refresh"]["auth"]["type"] == "bearerToken"
    assert route["refresh"]["tls"]["enabled"] is True


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
        (("refreshAuth.mode=mtls",), "refreshAuth.tls.secretName"),
        (("refreshAuth.mode=oauth",), "/refreshAuth/mode"),
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


@pytest.mark.parametrize("wait", [20, 5])
def test_the_operator_grace_period_outlasts_the_long_poll_a_clean_stop_waits_for(wait: int) -> None:
    """SIGTERM: the operator exits 0 once the SQS long poll in flight returns (19.7 s measured with the
    default 20 s in tests/e2e/test_images.py); the kubelet must not kill it before."""
    deployment = one(render_operator(f"queue.waitTimeSeconds={wait}"), "Deployment")
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == wait + 30
