"""The chart's test cases: value sets, refused values, mutated charts, rendered once per session.

Every install runs in one Helm worker process (see helmrender.py); the tests in
test_chart*.py look at the result through the `chart_run` and `scenario` fixtures (conftest.py).
"""

from __future__ import annotations

import asyncio
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

from controller.shell.kube.permissions import triples
from tests.packaging.helmrender import CHART_DIR, KINDS_BEFORE_1_30, Job, Rendered, render_many

ROOT = Path(__file__).resolve().parents[2]
ZAI = yaml.safe_load((ROOT / "config" / "zai-proxy.yaml").read_text())
MINIMAL = yaml.safe_load((ROOT / "config" / "minimal.yaml").read_text())
K8S_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())
# Kinds that exist only from a Kubernetes version on (validated from there).
SINCE = {"ValidatingAdmissionPolicy": "1.30.0", "ValidatingAdmissionPolicyBinding": "1.30.0"}
CRD_KINDS = {"ServiceMonitor", "PrometheusRule", "AlertmanagerConfig"}
UID = 65532

Triple = tuple[str, str, str]
LEADER_ELECTION = {("coordination.k8s.io", "leases")}
WORKLOAD: set[Triple] = {t for t in triples() if (t[0], t[1]) not in LEADER_ELECTION}
# The Lease's namespace also gets Events: those about the controller itself are on its Lease.
LEADER: set[Triple] = {
    t for t in triples() if (t[0], t[1]) in LEADER_ELECTION or (t[0], t[1]) == ("", "events")
}

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

ALERT_TOKEN = "chart-alert-token-5e1d"
ALERT_ROUTES = [{"matchers": ['alertname=~"ZaiProxy.*"', 'version="{{ canary_version }}"']}]

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
    # Three replicas sharing six shards: --shards, and the heartbeat ConfigMap's RBAC.
    "sharded": Job(
        "ptc",
        "ptc-system",
        {"replicaCount": 3, "sharding": {"enabled": True, "shards": 6}, "rollouts": [E2E_ROLLOUT]},
    ),
    "e2e": Job(
        "ptc",
        "ptc",
        {"prometheus": {"url": "http://127.0.0.1:9", "timeout": "1s"}, "rollouts": [E2E_ROLLOUT]},
    ),
    # deleteStable from defaults in one namespace, switched off by a rollout in another.
    "delete-stable": Job(
        "ptc",
        "ptc",
        {
            "defaults": {"namespace": "shop", "retention": {"deleteStable": True}},
            "rollouts": [
                *MINIMAL["rollouts"],
                {**E2E_ROLLOUT, "retention": {"scaleDownDelay": "1s", "deleteStable": False}},
            ],
        },
    ),
    "e2e-delete": Job(
        "ptc",
        "ptc",
        {
            "prometheus": {"url": "http://127.0.0.1:9", "timeout": "1s"},
            "rollouts": [
                {**E2E_ROLLOUT, "retention": {"scaleDownDelay": "1s", "deleteStable": True}}
            ],
        },
    ),
    # The Alertmanager receiver: a chart-made token Secret (also in the AlertmanagerConfig's
    # namespace), and one from an existing Secret.
    "alertmanager": Job(
        "ptc",
        "ptc-system",
        {
            "rollouts": [{**E2E_ROLLOUT, "alerts": ALERT_ROUTES}],
            "alertmanager": {
                "enabled": True,
                "token": ALERT_TOKEN,
                "alertmanagerConfig": {
                    "enabled": True,
                    "namespace": "devpod",
                    "labels": {"alertmanagerConfig": "ptc"},
                    "matchers": [{"name": "alertname", "value": "ZaiProxy.*", "matchType": "=~"}],
                },
            },
        },
    ),
    "alertmanager-existing-secret": Job(
        "edge",
        "monitoring",
        {
            "alertmanager": {
                "enabled": True,
                "existingSecret": "ptc-webhook",
                "secretKey": "bearer",
                "alertmanagerConfig": {"enabled": True},
            },
        },
    ),
    # The claim guard: per-namespace Roles (zai-proxy's devpod, plus team-a), and cluster-wide
    # RBAC for a ServiceAccount named in the values.
    "claim-guard": Job(
        "ptc",
        "ptc-system",
        {
            "rollouts": ZAI["rollouts"],
            "watchNamespaces": ["team-a"],
            "claimGuard": {"enabled": True},
        },
    ),
    "claim-guard-cluster-wide": Job(
        "edge",
        "platform",
        {
            "rbac": {"clusterWide": True},
            "serviceAccount": {"name": "rollouts-bot"},
            "defaults": {"namespace": "apps"},
            "rollouts": MINIMAL["rollouts"],
            "claimGuard": {"enabled": True, "validationActions": ["Warn", "Audit"]},
        },
    ),
}
GOOD = list(SCENARIOS)
# Installs expected to fail, with what Helm's error must say.
REFUSED: dict[str, tuple[Job, str]] = {
    "claim-guard-before-1.30": (
        Job("ptc", "ptc", {"claimGuard": {"enabled": True}}, kinds=KINDS_BEFORE_1_30),
        "claimGuard.enabled needs ValidatingAdmissionPolicy admissionregistration.k8s.io/v1 "
        "(Kubernetes >= 1.30)",
    ),
}

# Values the chart's schema must refuse, with what Helm's message must point at.
BAD_VALUES: dict[str, tuple[dict[str, Any], str]] = {
    "rollout-without-service": (
        {
            "rollouts": [
                {
                    "name": "x",
                    "stable": {"deployment": "a"},
                    "canary": {"deployment": "b", "version": "v2"},
                    "steps": [{"weight": 50}],
                }
            ]
        },
        "/rollouts/0",
    ),
    "bad-duration": (
        {"rollouts": [{**E2E_ROLLOUT, "steps": [{"weight": 50, "hold": "5 minutes"}]}]},
        "/rollouts/0/steps/0/hold",
    ),
    "unknown-config-key": ({"defaults": {"maxSurges": 1}}, "maxSurges"),
    "unknown-chart-key": ({"replicas": 3}, "replicas"),
    "zero-shards": ({"sharding": {"enabled": True, "shards": 0}}, "/sharding/shards"),
    "bad-prometheus": ({"prometheus": {"url": "http://x", "timeout": 10}}, "/prometheus/timeout"),
    "alerts-without-token": ({"alertmanager": {"enabled": True}}, "/alertmanager"),
    "alerts-bad-match-type": (
        {
            "alertmanager": {
                "enabled": True,
                "token": "t",
                "alertmanagerConfig": {"matchers": [{"name": "a", "matchType": "~"}]},
            }
        },
        "/alertmanager/alertmanagerConfig/matchers/0/matchType",
    ),
    "claim-guard-deny-and-warn": (
        {"claimGuard": {"enabled": True, "validationActions": ["Deny", "Warn"]}},
        "/claimGuard/validationActions",
    ),
    "claim-guard-no-action": (
        {"claimGuard": {"enabled": True, "validationActions": []}},
        "/claimGuard/validationActions",
    ),
}


def mutated_chart(
    workdir: Path, name: str, old: str, new: str, template: str = "_helpers.tpl"
) -> Path:
    """A copy of the chart with one edit in a template (to prove a chart test bites)."""
    chart = workdir / name / "ptc"
    shutil.copytree(CHART_DIR, chart)
    path = chart / "templates" / template
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    return chart


MUTATIONS = {
    "extra-verb": ('verbs: ["list", "watch"]', 'verbs: ["list", "watch", "delete"]'),
    "missing-resource": ('resources: ["endpointslices"]', 'resources: ["endpoints"]'),
    "wildcard": ('resources: ["pods"]', 'resources: ["*"]'),
    "delete-everywhere": (
        'verbs: ["get", "list", "watch", "patch"]\n',
        'verbs: ["get", "list", "watch", "patch", "delete"]\n',
    ),
}

# Edits of templates/claimguard.yaml that test_chart_claim_guard.py must notice.
GUARD_MUTATIONS = {
    "spec-unchecked": ('"object.spec == oldObject.spec"', '"true"'),
    "labels-unchecked": (
        "(has(object.metadata.labels) ?",
        "true || (has(object.metadata.labels) ?",
    ),
    "added-annotation-allowed": (
        "&& variables.newAnnotations.all(k, k == 'ptc.dev/claim' || k in variables.oldAnnotations)",
        "",
    ),
    "changed-annotation-allowed": (
        "&& variables.newAnnotations[k] == variables.oldAnnotations[k]",
        "",
    ),
    "other-claim-key": ("k == 'ptc.dev/claim' ||", "k == 'ptc.dev/claimed' ||"),
    "absent-old-annotations-read": (
        '"has(oldObject.metadata.annotations) ? oldObject.metadata.annotations : {}"',
        '"oldObject.metadata.annotations"',
    ),
    "absent-new-annotations-read": (
        '"has(object.metadata.annotations) ? object.metadata.annotations : {}"',
        '"object.metadata.annotations"',
    ),
    "owner-unchecked": (
        "(has(object.metadata.ownerReferences) ?",
        "true || (has(object.metadata.ownerReferences) ?",
    ),
    "finalizers-unchecked": (
        "(has(object.metadata.finalizers) ?",
        "true || (has(object.metadata.finalizers) ?",
    ),
    "wrong-user": ('"request.userInfo.username == %s"', '"request.userInfo.username != %s"'),
}


@dataclass
class ChartRun:
    """Everything one Helm worker produced."""

    # by case name: SCENARIOS, REFUSED, "bad:<name>", "mutant:<name>", "guard-mutant:<name>"
    results: dict[str, Rendered]
    lint: dict[str, Any] | None
    archive: list[str]  # member names of the `helm package` archive


def run_chart(workdir: Path) -> ChartRun:
    """Install every scenario, refused value set and mutated chart; lint; package."""
    jobs = dict(SCENARIOS)
    jobs |= {name: job for name, (job, _) in REFUSED.items()}
    for name, (values, _) in BAD_VALUES.items():
        jobs[f"bad:{name}"] = Job("ptc", "ptc", values)
    for name, (old, new) in MUTATIONS.items():
        chart = mutated_chart(workdir, name, old, new)
        jobs[f"mutant:{name}"] = Job("ptc", "ptc", SCENARIOS["zai-proxy"].values, chart)
    for name, (old, new) in GUARD_MUTATIONS.items():
        chart = mutated_chart(workdir, f"guard-{name}", old, new, "claimguard.yaml")
        guarded = SCENARIOS["claim-guard"]
        jobs[f"guard-mutant:{name}"] = Job(
            guarded.release, guarded.namespace, guarded.values, chart
        )
    package = workdir / "package"
    package.mkdir()
    results, lint = asyncio.run(
        render_many(list(jobs.values()), workdir, lint=True, package_to=package)
    )
    [archive] = package.glob("*.tgz")
    with tarfile.open(archive) as tar:
        members = tar.getnames()
    return ChartRun(dict(zip(jobs, results, strict=True)), lint, members)


def config_of(r: Rendered, tmp_path: Path) -> Path:
    """The rendered ConfigMap's config.yaml, written to a file."""
    cm = r.find("ConfigMap", fullname(r))[0]
    path = tmp_path / "config.yaml"
    path.write_text(cm["data"]["config.yaml"])
    return path


def fullname(r: Rendered) -> str:
    return r.job.release if "ptc" in r.job.release else f"{r.job.release}-ptc"


def deployment_of(r: Rendered) -> dict[str, Any]:
    return r.one("Deployment")


def container_of(r: Rendered) -> dict[str, Any]:
    containers = deployment_of(r)["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]
