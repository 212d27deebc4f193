"""The Helm chart, rendered by the real Helm library (helm-sdkpy) and checked object by object.

Every scenario is installed once per module (one Helm worker process, see helmrender.py), then:
Kubernetes schema validation (strict, 1.29 and the newest kubernetes-validate knows), RBAC ==
controller.kube.PERMISSIONS exactly, the rendered config accepted by `ptc validate`, the
Deployment's security and probes, the monitoring objects, the values schema and README. The slow
test runs the controller against the sandbox with a token holding only the rendered rules.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kr8s._api import Api as _KrApi

from controller import __version__
from controller.cli import build_parser
from controller.cli import main as ptc_main
from controller.config import load_config
from controller.daemon import Controller, DaemonOptions
from controller.kube import PERMISSIONS
from controller.kube.permissions import triples
from controller.metrics import Metrics
from controller.sandbox.apiaccess import Rule
from controller.sandbox.scenarios import zai_proxy_scenario
from controller.sandbox.world import Sandbox, SandboxOptions
from tests.packaging.helmrender import CHART_DIR, Job, Rendered, render_many

pytest.importorskip("helm_sdkpy", reason="pip install --ignore-requires-python helm-sdkpy")

ROOT = Path(__file__).resolve().parents[2]
ZAI = yaml.safe_load((ROOT / "config" / "zai-proxy.yaml").read_text())
MINIMAL = yaml.safe_load((ROOT / "config" / "minimal.yaml").read_text())
K8S_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}
UID = 65532

Triple = tuple[str, str, str]
LEADER_ELECTION = {("coordination.k8s.io", "leases")}
WORKLOAD: set[Triple] = {t for t in triples() if (t[0], t[1]) not in LEADER_ELECTION}
LEADER: set[Triple] = {t for t in triples() if (t[0], t[1]) in LEADER_ELECTION}

E2E_ROLLOUT = {
    "name": "zai-proxy",
    "namespace": "devpod",
    "service": "zai-proxy",
    "sharedSelector": {"app": "zai-proxy"},
    "stable": {"deployment": "zai-proxy"},
    "canary": {"deployment": "zai-proxy-v2", "version": "v2"},
    "replicas": 4,
    "maxSurge": 1,
    "maxUnavailable": 0,
    "steps": [{"weight": 25, "hold": "1s"}, {"weight": 50, "hold": "1s"}],
    "flip": {"bake": "1s"},
    "retention": {"scaleDownDelay": "1s"},
}

SCENARIOS: dict[str, Job] = {
    "default": Job("ptc", "ptc"),
    "zai-proxy": Job(
        "ptc", "ptc-system", {"prometheus": ZAI["prometheus"], "rollouts": ZAI["rollouts"]}
    ),
    "cluster-wide-monitoring": Job(
        "edge",
        "monitoring",
        {
            "rbac": {"clusterWide": True},
            "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
            "prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
            "dashboard": {"enabled": True},
            "defaults": {"namespace": "apps", "maxSurge": 1},
            "rollouts": MINIMAL["rollouts"],
            "watchNamespaces": ["team-a"],
        },
    ),
    "single-replica": Job(
        "ptc",
        "ptc",
        {
            "replicaCount": 1,
            "defaults": {"namespace": "shop"},
            "rollouts": [*MINIMAL["rollouts"], *ZAI["rollouts"]],
            "watchNamespaces": ["team-a", "devpod"],
            "image": {"digest": "sha256:" + "a" * 64},
        },
    ),
    "e2e": Job(
        "ptc",
        "ptc",
        {"prometheus": {"url": "http://127.0.0.1:9", "timeout": "1s"}, "rollouts": [E2E_ROLLOUT]},
    ),
}
GOOD = [name for name in SCENARIOS]

# Values the chart's schema must refuse, with what Helm's message must point at.
BAD_VALUES: dict[str, tuple[dict[str, Any], str]] = {
    "rollout-without-service": (
        {"rollouts": [{"name": "x", "stable": {"deployment": "a"}, "canary": {"deployment": "b", "version": "v2"}, "steps": [{"weight": 50}]}]},  # noqa: E501
        "/rollouts/0",
    ),
    "bad-duration": (
        {"rollouts": [{**E2E_ROLLOUT, "steps": [{"weight": 50, "hold": "5 minutes"}]}]},
        "/rollouts/0/steps/0/hold",
    ),
    "unknown-config-key": ({"defaults": {"maxSurges": 1}}, "maxSurges"),
    "unknown-chart-key": ({"replicas": 3}, "replicas"),
    "bad-prometheus": ({"prometheus": {"url": "http://x", "timeout": 10}}, "/prometheus/timeout"),
}


def _mutated_chart(workdir: Path, name: str, old: str, new: str) -> Path:
    """A copy of the chart with one edit in _helpers.tpl (to prove the RBAC test bites)."""
    chart = workdir / name / "ptc"
    shutil.copytree(CHART_DIR, chart)
    helpers = chart / "templates" / "_helpers.tpl"
    text = helpers.read_text()
    assert old in text
    helpers.write_text(text.replace(old, new, 1))
    return chart


MUTATIONS = {
    "extra-verb": ('verbs: ["list", "watch"]', 'verbs: ["list", "watch", "delete"]'),
    "missing-resource": ('resources: ["endpointslices"]', 'resources: ["endpoints"]'),
    "wildcard": ('resources: ["pods"]', 'resources: ["*"]'),
}


@pytest.fixture(scope="module")
def rendered(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[dict[str, Rendered], dict[str, Any] | None]:
    """Every scenario, bad value set and mutated chart, installed by one Helm worker."""
    workdir = tmp_path_factory.mktemp("helm")
    jobs = dict(SCENARIOS)
    for name, (values, _) in BAD_VALUES.items():
        jobs[f"bad:{name}"] = Job("ptc", "ptc", values)
    for name, (old, new) in MUTATIONS.items():
        chart = _mutated_chart(workdir, name, old, new)
        jobs[f"mutant:{name}"] = Job("ptc", "ptc", SCENARIOS["zai-proxy"].values, chart)
    results, lint = asyncio.run(render_many(list(jobs.values()), workdir, lint=True))
    return dict(zip(jobs, results, strict=True)), lint


@pytest.fixture(params=GOOD)
def scenario(request: pytest.FixtureRequest, rendered: Any) -> Rendered:
    result: Rendered = rendered[0][request.param]
    assert result.error is None, result.error
    assert not result.unexpected
    return result


def config_of(r: Rendered, tmp_path: Path) -> Path:
    """The rendered ConfigMap's config.yaml, written to a file."""
    cm = r.find("ConfigMap", _fullname(r))[0]
    path = tmp_path / "config.yaml"
    path.write_text(cm["data"]["config.yaml"])
    return path


def _fullname(r: Rendered) -> str:
    return r.job.release if "ptc" in r.job.release else f"{r.job.release}-ptc"


def deployment_of(r: Rendered) -> dict[str, Any]:
    return r.one("Deployment")


def container_of(r: Rendered) -> dict[str, Any]:
    containers = deployment_of(r)["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


# --- the chart's metadata, values schema and docs ------------------------------------------


def test_chart_metadata() -> None:
    chart = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2" and chart["name"] == "ptc"
    assert chart["appVersion"] == __version__
    assert re.fullmatch(r"\d+\.\d+\.\d+", chart["version"])


def test_values_schema_is_generated_from_the_config_schema() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("generate_schema", CHART_DIR / "generate_schema.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    committed = (CHART_DIR / "values.schema.json").read_text()
    assert committed == module.render(), "stale: run python helm/ptc/generate_schema.py"
    schema = json.loads(committed)
    config = json.loads((ROOT / "config" / "schema.json").read_text())
    assert schema["$defs"] == config["$defs"]
    assert schema["properties"]["prometheus"]["$ref"] == "#/$defs/PrometheusSettings"
    assert schema["properties"]["defaults"]["$ref"] == "#/$defs/RolloutDefaults"
    assert schema["properties"]["rollouts"]["items"] == config["properties"]["rollouts"]["items"]
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    assert set(values) <= set(schema["properties"]), "a value the schema does not describe"


def _value_paths(node: dict[str, Any], prefix: str = "") -> Iterator[str]:
    """Dotted paths of every leaf (non-mapping or empty mapping) in values.yaml."""
    for key, value in node.items():
        path = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict) and value:
            yield from _value_paths(value, path)
        else:
            yield path


def test_every_value_is_documented_in_the_readme() -> None:
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    readme = (CHART_DIR / "README.md").read_text()
    missing = [p for p in _value_paths(values) if f"`{p}`" not in readme]
    assert not missing, f"values not documented in helm/ptc/README.md: {missing}"


def test_lint_reports_nothing_above_info(rendered: Any) -> None:
    lint = rendered[1]
    assert lint is not None and lint["TotalChartsLinted"] == 1
    assert not lint.get("Errors")
    # helm's support.Severity: 0 unknown, 1 info, 2 warning, 3 error (messages' text is lost).
    worse = [m for m in lint.get("Messages") or [] if m["Severity"] >= 2]
    assert not worse, worse


@pytest.mark.parametrize("name", list(BAD_VALUES))
def test_values_schema_refuses_bad_config(rendered: Any, name: str) -> None:
    result: Rendered = rendered[0][f"bad:{name}"]
    assert result.error is not None, "Helm accepted invalid values"
    assert "schema" in result.error and BAD_VALUES[name][1] in result.error, result.error
    assert not result.objects


# --- every object ---------------------------------------------------------------------------


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_objects_pass_strict_kubernetes_validation(scenario: Rendered, version: str) -> None:
    assert scenario.objects
    for obj in scenario.objects:
        if obj["kind"] in CRD_KINDS:
            continue
        kubernetes_validate.validate(obj, version, strict=True)


def test_created_objects_are_the_manifest(scenario: Rendered) -> None:
    manifest = [d for d in yaml.safe_load_all(scenario.manifest) if d]
    key = lambda o: (o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"])  # noqa: E731
    assert sorted(map(key, manifest)) == sorted(map(key, scenario.objects))
    for obj in scenario.objects:
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["app.kubernetes.io/instance"] == scenario.job.release


def test_default_install_objects(rendered: Any) -> None:
    r: Rendered = rendered[0]["default"]
    kinds = sorted(o["kind"] for o in r.objects)
    # No rollouts yet: no workload Role, only the leader-election one; no optional objects.
    assert kinds == sorted(
        [
            "ConfigMap",
            "Deployment",
            "PodDisruptionBudget",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount",
        ]
    )


# --- RBAC -----------------------------------------------------------------------------------


def rbac_grants(r: Rendered) -> dict[str, set[Triple]]:
    """What the controller's ServiceAccount is granted, per namespace (``*``: cluster-wide).

    Also checks that every Role/ClusterRole is bound to it and holds nothing but plain rules.
    """
    sa = r.one("ServiceAccount")
    subject = {"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": r.job.namespace}
    roles = {("Role", o["metadata"]["namespace"], o["metadata"]["name"]): o for o in r.find("Role")}
    roles |= {("ClusterRole", "*", o["metadata"]["name"]): o for o in r.find("ClusterRole")}
    grants: dict[str, set[Triple]] = {}
    bound = set()
    for binding in [*r.find("RoleBinding"), *r.find("ClusterRoleBinding")]:
        assert binding["subjects"] == [subject], binding["subjects"]
        ref = binding["roleRef"]
        assert ref["apiGroup"] == "rbac.authorization.k8s.io"
        namespace = binding["metadata"].get("namespace", "*")
        role_ns = "*" if ref["kind"] == "ClusterRole" else namespace
        role = roles[(ref["kind"], role_ns, ref["name"])]
        bound.add((ref["kind"], role_ns, ref["name"]))
        for rule in role["rules"]:
            assert set(rule) == {"apiGroups", "resources", "verbs"}, rule
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        grants.setdefault(namespace, set()).add((group, resource, verb))
    assert bound == set(roles), f"roles nobody uses: {set(roles) - bound}"
    return grants


def expected_grants(r: Rendered, tmp_path: Path) -> dict[str, set[Triple]]:
    """The grants the chart must give: from ptc's own reading of the rendered config."""
    config = load_config(str(config_of(r, tmp_path))).config
    namespaces = {rollout.namespace for rollout in config.rollouts}
    namespaces |= set(r.job.values.get("watchNamespaces", []))
    expected: dict[str, set[Triple]] = {}
    if r.job.values.get("rbac", {}).get("clusterWide"):
        expected["*"] = set(WORKLOAD)
    else:
        for ns in namespaces:
            expected[ns] = set(WORKLOAD)
    expected.setdefault(r.job.namespace, set()).update(LEADER)
    return expected


def test_rbac_is_exactly_the_controllers_permissions(scenario: Rendered, tmp_path: Path) -> None:
    grants = rbac_grants(scenario)
    assert grants == expected_grants(scenario, tmp_path)
    union = set().union(*grants.values())
    if union == LEADER:  # no rollouts and no watchNamespaces: nothing to manage yet
        assert scenario.job.values.get("rollouts") is None
        return
    assert union == set(triples()), (
        f"granted but not in PERMISSIONS: {union - set(triples())}; "
        f"in PERMISSIONS but not granted: {set(triples()) - union}"
    )


def test_rbac_rules_mirror_permissions_one_rule_per_resource(scenario: Rendered) -> None:
    by_resource = {(p.api_group, p.resource): sorted(p.verbs) for p in PERMISSIONS}
    for role in [*scenario.find("Role"), *scenario.find("ClusterRole")]:
        for rule in role["rules"]:
            assert len(rule["apiGroups"]) == 1 and len(rule["resources"]) == 1, rule
            key = (rule["apiGroups"][0], rule["resources"][0])
            assert sorted(rule["verbs"]) == by_resource[key]


def test_rbac_namespaces(rendered: Any) -> None:
    zai: Rendered = rendered[0]["zai-proxy"]
    assert sorted(
        (o["metadata"]["namespace"], o["metadata"]["name"]) for o in zai.find("Role")
    ) == [("devpod", "ptc"), ("ptc-system", "ptc-leader-election")]
    single: Rendered = rendered[0]["single-replica"]
    assert sorted(o["metadata"]["namespace"] for o in single.find("Role")) == [
        "devpod",
        "ptc",  # leader election
        "shop",  # minimal.yaml's rollout, namespace from defaults.namespace
        "team-a",
    ]
    wide: Rendered = rendered[0]["cluster-wide-monitoring"]
    assert [o["metadata"]["name"] for o in wide.find("ClusterRole")] == ["edge-ptc"]
    assert [o["metadata"]["name"] for o in wide.find("Role")] == ["edge-ptc-leader-election"]


@pytest.mark.parametrize("mutation", list(MUTATIONS))
def test_rbac_check_catches_a_chart_that_drifts(
    rendered: Any, mutation: str, tmp_path: Path
) -> None:
    mutant: Rendered = rendered[0][f"mutant:{mutation}"]
    assert mutant.error is None, mutant.error
    assert rbac_grants(mutant) != expected_grants(mutant, tmp_path)


# --- the config ---------------------------------------------------------------------------


def test_rendered_config_passes_ptc_validate(
    scenario: Rendered, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = config_of(scenario, tmp_path)
    assert ptc_main(["validate", str(path)]) == 0, capsys.readouterr().err
    assert f"{path}: ok" in capsys.readouterr().out
    document = yaml.safe_load(path.read_text())
    values = scenario.job.values
    assert document["rollouts"] == values.get("rollouts", [])
    assert document.get("defaults", {}) == values.get("defaults", {})
    chart_prometheus = yaml.safe_load((CHART_DIR / "values.yaml").read_text())["prometheus"]
    assert document["prometheus"] == {**chart_prometheus, **values.get("prometheus", {})}


def test_zai_proxy_config_survives_the_chart_unchanged(rendered: Any, tmp_path: Path) -> None:
    r: Rendered = rendered[0]["zai-proxy"]
    via_chart = load_config(str(config_of(r, tmp_path))).config
    direct = load_config(str(ROOT / "config" / "zai-proxy.yaml")).config
    assert via_chart == direct


# --- the Deployment ---------------------------------------------------------------------------


def test_deployment_security_context(scenario: Rendered) -> None:
    pod = deployment_of(scenario)["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == UID
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = container_of(scenario)["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] == UID
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["serviceAccountName"] == scenario.one("ServiceAccount")["metadata"]["name"]
    assert pod["automountServiceAccountToken"] is True


def test_deployment_runs_ptc_with_identity_probes_and_mounts(scenario: Rendered) -> None:
    deployment = deployment_of(scenario)
    replicas = scenario.job.values.get("replicaCount", 2)
    assert deployment["spec"]["replicas"] == replicas
    template = deployment["spec"]["template"]
    assert not any("checksum" in k for k in template["metadata"].get("annotations", {}))
    c = container_of(scenario)
    assert "command" not in c, "the image's ENTRYPOINT is ptc"
    args = build_parser().parse_args(c["args"])  # real `ptc run` flags only
    assert args.command == "run" and args.config == "/etc/ptc/config.yaml"
    assert args.identity == "$(POD_NAME)"
    env = {e["name"]: e for e in c["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    port = {p["name"]: p["containerPort"] for p in c["ports"]}["http-metrics"]
    assert args.listen == f"0.0.0.0:{port}"
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http-metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http-metrics"}
    assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in template["spec"]["volumes"]}
    config_mount = mounts["/etc/ptc"]
    assert "subPath" not in config_mount, "subPath mounts never see ConfigMap updates"
    assert config_mount["readOnly"] is True
    assert volumes[config_mount["name"]]["configMap"]["name"] == _fullname(scenario)
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
    image = c["image"]
    digest = scenario.job.values.get("image", {}).get("digest")
    assert image == (f"ghcr.io/ptc-dev/ptc@{digest}" if digest else f"ghcr.io/ptc-dev/ptc:{__version__}")


def test_service_and_pdb(scenario: Rendered) -> None:
    pod_labels = deployment_of(scenario)["spec"]["template"]["metadata"]["labels"]
    svc = scenario.one("Service")
    assert svc["spec"]["ports"] == [
        {"name": "http-metrics", "port": 8080, "targetPort": "http-metrics", "protocol": "TCP"}
    ]
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    pdbs = scenario.find("PodDisruptionBudget")
    if scenario.job.values.get("replicaCount", 2) > 1:
        assert len(pdbs) == 1 and pdbs[0]["spec"]["minAvailable"] == 1
        assert pdbs[0]["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    else:
        assert pdbs == []


def test_notes_say_how_to_see_rollout_status(rendered: Any) -> None:
    notes = rendered[0]["zai-proxy"].notes
    assert "kubectl -n ptc-system port-forward svc/ptc 8080:8080" in notes
    assert "curl -s http://127.0.0.1:8080/api/v1/rollouts" in notes
    assert "kubectl -n devpod get events" in notes and "involvedObject.name=zai-proxy" in notes
    assert "ptc\\.dev/state" in notes


# --- monitoring ---------------------------------------------------------------------------


def _ptc_metric_names() -> set[str]:
    names = set()
    for family in Metrics().registry.collect():
        names.add(family.name)
        names.update(s.name for s in family.samples)
        if family.type == "counter":
            names.add(family.name + "_total")
    return names


def test_service_monitor(rendered: Any) -> None:
    r: Rendered = rendered[0]["cluster-wide-monitoring"]
    sm = r.one("ServiceMonitor")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["metadata"]["name"] == "edge-ptc"
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    svc = r.one("Service")
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert sm["spec"]["namespaceSelector"] == {"matchNames": ["monitoring"]}
    [endpoint] = sm["spec"]["endpoints"]
    assert endpoint["port"] == svc["spec"]["ports"][0]["name"]
    assert endpoint["path"] == "/metrics" and endpoint["interval"] == "30s"
    assert not rendered[0]["zai-proxy"].find("ServiceMonitor")


def prometheus_rule(rendered: Any) -> dict[str, Any]:
    r: Rendered = rendered[0]["cluster-wide-monitoring"]
    rule = r.one("PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    return rule


def test_prometheus_rule_alerts(rendered: Any) -> None:
    rule = prometheus_rule(rendered)
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    assert set(alerts) == {"PtcRollbackHappened", "PtcRolloutPausedTooLong", "PtcRolloutFailed"}
    assert "increase(ptc_rollbacks_total[10m])) > 0" in alerts["PtcRollbackHappened"]["expr"]
    paused = alerts["PtcRolloutPausedTooLong"]
    assert 'ptc_rollout_phase{phase="paused"}) == 1' in paused["expr"] and paused["for"] == "30m"
    assert 'ptc_rollout_phase{phase="failed"}) == 1' in alerts["PtcRolloutFailed"]["expr"]
    known = _ptc_metric_names()
    for alert in alerts.values():
        assert alert["labels"]["severity"] and alert["annotations"]["summary"]
        for name in re.findall(r"\bptc_[a-z_]+", alert["expr"]):
            assert name in known, f"{alert['alert']} uses {name}, which ptc does not export"


PROMTOOL_TESTS = """
rule_files: [rules.yaml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'ptc_rollbacks_total{namespace="devpod",rollout="zai-proxy",instance="a"}'
        values: '0 0 0 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1'
      - series: 'ptc_rollout_phase{namespace="devpod",rollout="zai-proxy",phase="paused",instance="a"}'
        values: '1x40'
      - series: 'ptc_rollout_phase{namespace="devpod",rollout="zai-proxy",phase="paused",instance="b"}'
        values: '1x40'
      - series: 'ptc_rollout_phase{namespace="devpod",rollout="web",phase="failed",instance="a"}'
        values: '0 0 1x10'
    alert_rule_test:
      - {eval_time: 2m, alertname: PtcRollbackHappened, exp_alerts: []}
      - {eval_time: 5m, alertname: PtcRollbackHappened, exp_alerts: [ROLLBACK]}
      - {eval_time: 20m, alertname: PtcRollbackHappened, exp_alerts: []}
      - {eval_time: 29m, alertname: PtcRolloutPausedTooLong, exp_alerts: []}
      - {eval_time: 31m, alertname: PtcRolloutPausedTooLong, exp_alerts: [PAUSED]}
      - {eval_time: 5m, alertname: PtcRolloutFailed, exp_alerts: [FAILED]}
"""
# Which alert each test expects (one per (namespace, rollout), even with two replicas scraped).
PROMTOOL_EXPECTED = {
    "ROLLBACK": ("PtcRollbackHappened", {"namespace": "devpod", "rollout": "zai-proxy"}),
    "PAUSED": ("PtcRolloutPausedTooLong", {"namespace": "devpod", "rollout": "zai-proxy"}),
    "FAILED": ("PtcRolloutFailed", {"namespace": "devpod", "rollout": "web"}),
}


def _promtool_tests(alerts: dict[str, dict[str, Any]]) -> str:
    """PROMTOOL_TESTS with each placeholder replaced by the alert's labels and annotations."""
    text = PROMTOOL_TESTS
    for placeholder, (name, labels) in PROMTOOL_EXPECTED.items():
        rule = alerts[name]
        annotations = {
            key: re.sub(r"\{\{\s*\$labels\.(\w+)\s*\}\}", lambda m: labels[m[1]], value)
            for key, value in rule["annotations"].items()
        }
        expected = {"exp_labels": {**labels, **rule["labels"]}, "exp_annotations": annotations}
        text = text.replace(placeholder, json.dumps(expected))
    return text


def test_prometheus_rule_fires_as_intended_under_promtool(rendered: Any, tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package prometheus; `make prometheus`)")
    spec = prometheus_rule(rendered)["spec"]
    alerts = {r["alert"]: r for g in spec["groups"] for r in g["rules"]}
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(spec))
    (tmp_path / "tests.yaml").write_text(_promtool_tests(alerts))
    for args in (["check", "rules", "rules.yaml"], ["test", "rules", "tests.yaml"]):
        proc = subprocess.run(
            [promtool, *args], cwd=tmp_path, capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_grafana_dashboard(rendered: Any) -> None:
    r: Rendered = rendered[0]["cluster-wide-monitoring"]
    [cm] = r.find("ConfigMap", "edge-ptc-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(cm["data"]["ptc.json"])
    assert dashboard == json.loads((CHART_DIR / "dashboards" / "ptc.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    text = "\n".join(exprs)
    for metric in (
        "ptc_rollout_phase",
        "ptc_rollout_weight_desired_percent",
        "ptc_rollout_weight_actual_percent",
        "ptc_analysis_value",
        "ptc_rollbacks_total",
    ):
        assert metric in text, f"dashboard does not show {metric}"
    known = _ptc_metric_names()
    for name in re.findall(r"\bptc_[a-z_]+", text):
        assert name in known, f"dashboard uses {name}, which ptc does not export"
    for code in ("429", "502"):
        assert any(
            f'status_code="{code}"' in e and "by (variant)" in e and "zai_proxy_requests_total" in e
            for e in exprs
        ), f"no {code} ratio by variant"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert not rendered[0]["zai-proxy"].find("ConfigMap", "ptc-dashboard")


# --- least privilege, end to end --------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.e2e
async def test_controller_completes_a_rollout_with_only_the_rendered_rbac(
    rendered: Any, tmp_path: Path
) -> None:
    r: Rendered = rendered[0]["e2e"]
    assert r.error is None, r.error
    # The token holds exactly the rules of the Roles bound to the chart's ServiceAccount.
    rules = [
        Rule(tuple(rule["apiGroups"]), tuple(rule["resources"]), tuple(rule["verbs"]))
        for role in [*r.find("Role"), *r.find("ClusterRole")]
        for rule in role["rules"]
    ]
    sa = r.one("ServiceAccount")["metadata"]
    user = f"system:serviceaccount:{sa['namespace']}:{sa['name']}"
    loaded = load_config(str(config_of(r, tmp_path)))  # the ConfigMap's config.yaml, as mounted
    _KrApi._instances.clear()
    options = SandboxOptions(
        workdir=tmp_path / "sandbox",
        prometheus=False,
        control_port=None,
        ready_delay=0.2,
        termination_grace=0.2,
        traffic_rate=10,
        seed=3,
    )
    async with Sandbox(options) as sandbox:
        api = sandbox.api
        await zai_proxy_scenario(sandbox)
        api.add_token("ptc-sa-token", user, rules)
        kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig", token="ptc-sa-token")
        controller = Controller(
            loaded.config,
            DaemonOptions(
                kubeconfig=str(kubeconfig),
                listen_host="127.0.0.1",
                listen_port=0,
                identity="ptc-7d9f-abcde",
            ),
        )
        task = asyncio.create_task(controller.run(), name="controller")
        try:
            async with asyncio.timeout(60):
                while True:
                    svc = api.get("services", "zai-proxy", "devpod")
                    raw = (svc["metadata"].get("annotations") or {}).get("ptc.dev/state")
                    state = json.loads(raw) if raw else {}
                    if state.get("phase") in ("completed", "rolled-back", "failed", "paused"):
                        break
                    assert not task.done(), "controller stopped early"
                    await asyncio.sleep(0.1)
        finally:
            controller.stop()
            await asyncio.wait_for(task, timeout=30)
        assert state["phase"] == "completed", state
        assert svc["spec"]["selector"] == {"app": "zai-proxy", "version": "v2"}
        counts = api.request_counts()
    _KrApi._instances.clear()
    used = {
        (k.verb, k.group, k.resource)
        for k in counts
        if k.user == user and not k.resource.startswith("/")  # discovery aside
    }
    assert used, "the controller made no API requests with the token"
    # Every request is one the rules allow: none of them can have been answered 403.
    denied = {u for u in used if not any(rule.allows(*u) for rule in rules)}
    assert not denied, f"requests the rendered RBAC forbids: {denied}"
    assert "Forbidden" not in controller.metrics.render().decode()
    # And the workload rules were needed: the controller used every resource they name.
    assert {(g, res) for _, g, res in used} == {(g, res) for g, res, _ in WORKLOAD}
