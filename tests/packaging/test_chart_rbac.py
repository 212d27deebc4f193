"""The chart's RBAC is exactly controller.shell.kube.PERMISSIONS, and is enough: end to end.

The slow test installs nothing: it takes the rules of the rendered Roles, gives them to a sandbox
token, and runs the controller with the rendered config.yaml until a rollout completes.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from kr8s._api import Api as _KrApi

from controller.core.config import load_config
from controller.core.state import Phase, read_state
from controller.sandbox.apiaccess import Rule
from controller.sandbox.scenarios import zai_proxy_scenario
from controller.sandbox.world import Sandbox, SandboxOptions
from controller.shell.daemon import Controller
from controller.shell.kube import PERMISSIONS
from controller.shell.kube.permissions import DELETE_STABLE, triples
from controller.shell.options import DaemonOptions
from tests.packaging.chartcases import (
    LEADER,
    MUTATIONS,
    WORKLOAD,
    ChartRun,
    Rendered,
    Triple,
    config_of,
)

# Where the test stops waiting (and then checks the rollout completed).
ENDS = (Phase.COMPLETED, Phase.ROLLED_BACK, Phase.FAILED, Phase.PAUSED)


def rbac_grants(r: Rendered) -> dict[str, set[Triple]]:
    """What the controller's ServiceAccount is granted, per namespace (``*``: cluster-wide).

    Also checks that every Role/ClusterRole is bound to it and holds nothing but plain rules.
    """
    sa = r.one("ServiceAccount")
    subject = {
        "kind": "ServiceAccount",
        "name": sa["metadata"]["name"],
        "namespace": r.job.namespace,
    }
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
    deleting = {r.namespace for r in config.rollouts if r.retention.delete_stable}
    base = WORKLOAD - {DELETE_STABLE}
    expected: dict[str, set[Triple]] = {}
    if r.job.values.get("rbac", {}).get("clusterWide"):
        expected["*"] = base | ({DELETE_STABLE} if deleting else set())
    else:
        for ns in namespaces:
            expected[ns] = base | ({DELETE_STABLE} if ns in deleting else set())
    expected.setdefault(r.job.namespace, set()).update(LEADER)
    if r.job.values.get("sharding", {}).get("enabled"):
        # the replicas' heartbeat ConfigMap (<lease>-members) lives with the shards' Leases;
        # it is read and written whole, never claimed (patch)
        expected[r.job.namespace] |= {
            t for t in WORKLOAD if t[:2] == ("", "configmaps") and t[2] != "patch"
        }
    return expected


def test_rbac_is_exactly_the_controllers_permissions(scenario: Rendered, tmp_path: Path) -> None:
    grants = rbac_grants(scenario)
    assert grants == expected_grants(scenario, tmp_path)
    union = set().union(*grants.values())
    if union == LEADER:  # no rollouts and no watchNamespaces: nothing to manage yet
        assert scenario.job.values.get("rollouts") is None
        return
    if DELETE_STABLE not in union:  # no rollout deletes its stable: nothing may delete
        union.add(DELETE_STABLE)
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
            verbs = set(rule["verbs"])
            if (*key, "delete") == DELETE_STABLE:
                verbs.add("delete")  # granted only where a rollout deletes its stable
            if role["metadata"]["name"].endswith("leader-election") and key == ("", "configmaps"):
                verbs.add("patch")  # the shards' heartbeat there is never claimed
            assert sorted(verbs) == by_resource[key]


def test_rbac_namespaces(chart_run: ChartRun) -> None:
    zai: Rendered = chart_run.results["zai-proxy"]
    assert sorted(
        (o["metadata"]["namespace"], o["metadata"]["name"]) for o in zai.find("Role")
    ) == [("devpod", "ptc"), ("ptc-system", "ptc-leader-election")]
    single: Rendered = chart_run.results["single-replica"]
    assert sorted(o["metadata"]["namespace"] for o in single.find("Role")) == [
        "devpod",
        "ptc",  # leader election
        "shop",  # minimal.yaml's rollout, namespace from defaults.namespace
        "team-a",
    ]
    deleting: Rendered = chart_run.results["delete-stable"]
    verbs = {
        o["metadata"]["namespace"]: next(
            rule["verbs"] for rule in o["rules"] if rule["resources"] == ["deployments"]
        )
        for o in deleting.find("Role")
        if not o["metadata"]["name"].endswith("leader-election")
    }
    # shop's rollout inherits deleteStable from defaults; devpod's switches it off.
    assert verbs == {
        "shop": ["get", "list", "watch", "patch", "delete"],
        "devpod": ["get", "list", "watch", "patch"],
    }
    assert "delete" not in str(zai.find("Role"))  # the seed keeps stable: no delete anywhere
    wide: Rendered = chart_run.results["cluster-wide-monitoring"]
    assert [o["metadata"]["name"] for o in wide.find("ClusterRole")] == ["edge-ptc"]
    assert [o["metadata"]["name"] for o in wide.find("Role")] == ["edge-ptc-leader-election"]


@pytest.mark.parametrize("mutation", list(MUTATIONS))
def test_rbac_check_catches_a_chart_that_drifts(
    chart_run: ChartRun, mutation: str, tmp_path: Path
) -> None:
    mutant: Rendered = chart_run.results[f"mutant:{mutation}"]
    assert mutant.error is None, mutant.error
    assert rbac_grants(mutant) != expected_grants(mutant, tmp_path)


@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.usefixtures("structlog_to_this_tests_stderr")
@pytest.mark.parametrize("case", ["e2e", "e2e-delete"])
async def test_controller_completes_a_rollout_with_only_the_rendered_rbac(
    chart_run: ChartRun, tmp_path: Path, case: str
) -> None:
    r: Rendered = chart_run.results[case]
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
                    state = read_state({"ptc.dev/state": raw}) if raw else None
                    if state is not None and state.phase in ENDS:
                        break
                    assert not task.done(), "controller stopped early"
                    await asyncio.sleep(0.1)
        finally:
            controller.stop()
            await asyncio.wait_for(task, timeout=30)
        assert state is not None and state.phase is Phase.COMPLETED, state
        assert svc["spec"]["selector"] == {"app": "zai-proxy", "version": "v2"}
        names = {d["metadata"]["name"] for d in api.list("deployments", "devpod")}
        assert ("zai-proxy" not in names) == (case == "e2e-delete"), names
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
    # And the rules were needed: the controller used every resource they name, the Lease of
    # its leader election included.
    assert {(g, res) for _, g, res in used} == {(g, res) for g, res, _ in WORKLOAD | LEADER}
