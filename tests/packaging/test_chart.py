"""The Helm chart, rendered by the real Helm library (helm-sdkpy), object by object.

Scenarios and how they are rendered: chartcases.py. Here: chart metadata, values schema, README,
lint and package; strict Kubernetes validation (1.29 and the newest kubernetes-validate knows);
the rendered config accepted by `ptc validate`; the Deployment's security, probes and mounts; the
Service, PodDisruptionBudget and NOTES. RBAC: test_chart_rbac.py; monitoring:
test_chart_monitoring.py.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from controller import __version__
from controller.core.config import load_config
from controller.ops.cli import build_parser
from tests.packaging.chartcases import (
    BAD_VALUES,
    CHART_DIR,
    CRD_KINDS,
    GOOD,
    K8S_VERSIONS,
    REFUSED,
    ROOT,
    SINCE,
    UID,
    ChartRun,
    Rendered,
    config_of,
    container_of,
    deployment_of,
    fullname,
)

# --- the chart's metadata, values schema and docs ------------------------------------------


def test_chart_metadata() -> None:
    chart = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2" and chart["name"] == "ptc"
    assert chart["appVersion"] == __version__
    assert re.fullmatch(r"\d+\.\d+\.\d+", chart["version"])


def test_values_schema_is_generated_from_the_config_schema() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "generate_schema", CHART_DIR / "generate_schema.py"
    )
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


def test_lint_reports_nothing_above_info(chart_run: ChartRun) -> None:
    lint = chart_run.lint
    assert lint is not None and lint["TotalChartsLinted"] == 1
    assert not lint.get("Errors")
    # helm's support.Severity: 0 unknown, 1 info, 2 warning, 3 error (messages' text is lost).
    worse = [m for m in lint.get("Messages") or [] if m["Severity"] >= 2]
    assert not worse, worse


def test_package_ships_the_chart_files_and_not_the_generator(chart_run: ChartRun) -> None:
    packaged = chart_run.archive  # member names of the archive `helm package` made
    assert "ptc/Chart.yaml" in packaged
    for name in ("values.schema.json", "README.md", "dashboards/ptc.json", "templates/NOTES.txt"):
        assert f"ptc/{name}" in packaged
    assert not [n for n in packaged if n.endswith(".py") or "__pycache__" in n], packaged


@pytest.mark.parametrize("name", list(REFUSED))
def test_chart_refuses_what_the_cluster_cannot_serve(chart_run: ChartRun, name: str) -> None:
    result: Rendered = chart_run.results[name]
    assert result.error is not None and REFUSED[name][1] in result.error, result.error
    assert not result.objects


@pytest.mark.parametrize("name", list(BAD_VALUES))
def test_values_schema_refuses_bad_config(chart_run: ChartRun, name: str) -> None:
    result: Rendered = chart_run.results[f"bad:{name}"]
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
        # a kind newer than `version` is checked against the first version that has it
        at = max(version, SINCE.get(obj["kind"], version), key=_version_key)
        kubernetes_validate.validate(obj, at, strict=True)


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def test_created_objects_are_the_manifest(scenario: Rendered) -> None:
    manifest = [d for d in yaml.safe_load_all(scenario.manifest) if d]
    key = lambda o: (o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"])  # noqa: E731
    assert sorted(map(key, manifest)) == sorted(map(key, scenario.objects))
    for obj in scenario.objects:
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["app.kubernetes.io/instance"] == scenario.job.release


def test_default_install_objects(chart_run: ChartRun) -> None:
    r: Rendered = chart_run.results["default"]
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


def test_rendered_configs_pass_ptc_validate(chart_run: ChartRun, tmp_path: Path) -> None:
    # The real command, in its own process (like a user, or an init step, would run it).
    paths = []
    for name in GOOD:
        (tmp_path / name).mkdir()
        paths.append(config_of(chart_run.results[name], tmp_path / name))
    ptc = shutil.which("ptc")
    command = (
        [ptc] if ptc else [sys.executable, "-c", "from controller.ops.cli import main; main()"]
    )
    proc = subprocess.run(
        [*command, "validate", *map(str, paths)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for path in paths:
        assert f"{path}: ok" in proc.stdout


def test_rendered_config_is_the_values(scenario: Rendered, tmp_path: Path) -> None:
    document = yaml.safe_load(config_of(scenario, tmp_path).read_text())
    values = scenario.job.values
    assert set(document) <= {"prometheus", "defaults", "rollouts"}
    assert document["rollouts"] == values.get("rollouts", [])
    assert document.get("defaults", {}) == values.get("defaults", {})
    chart_prometheus = yaml.safe_load((CHART_DIR / "values.yaml").read_text())["prometheus"]
    assert document["prometheus"] == {**chart_prometheus, **values.get("prometheus", {})}


def test_zai_proxy_config_survives_the_chart_unchanged(chart_run: ChartRun, tmp_path: Path) -> None:
    r: Rendered = chart_run.results["zai-proxy"]
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
    sharding = scenario.job.values.get("sharding", {})
    assert args.shards == (sharding["shards"] if sharding.get("enabled") else 0)
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
    assert volumes[config_mount["name"]]["configMap"]["name"] == fullname(scenario)
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
    image = c["image"]
    digest = scenario.job.values.get("image", {}).get("digest")
    assert image == (
        f"ghcr.io/ptc-dev/ptc@{digest}" if digest else f"ghcr.io/ptc-dev/ptc:{__version__}"
    )


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


def test_notes_say_how_to_see_rollout_status(chart_run: ChartRun) -> None:
    notes = chart_run.results["zai-proxy"].notes
    assert "kubectl -n ptc-system port-forward svc/ptc 8080:8080" in notes
    assert "curl -s http://127.0.0.1:8080/api/v1/rollouts" in notes
    assert "kubectl -n devpod get events" in notes and "involvedObject.name=zai-proxy" in notes
    assert "ptc\\.dev/state" in notes
