"""The chart's claim guard (claimGuard.enabled): a ValidatingAdmissionPolicy limiting ptc's
`patch deployments` to the `ptc.dev/claim` annotation.

Its CEL is evaluated, not read: tests/packaging/admission.py runs the rendered policy and binding
with cel-python over old/new Deployments that the sandbox API server produced — ptc's own claim
(`Kube.annotate_deployment`, as a new leader sends it) and the changes the guard must refuse.
"""

from __future__ import annotations

import asyncio
import copy
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kr8s._api import Api as _KrApi

from controller.sandbox.apiserver import ApiServer
from controller.sandbox.scenarios import deployment
from controller.shell.kube import Kube
from controller.shell.kube.errors import Forbidden, error_for_status
from controller.shell.kube.retrying import after_api_error
from controller.shell.reconciler.claim import CLAIM_ANNOTATION, claim_mark
from tests.packaging.admission import Request, Verdict, admit
from tests.packaging.chartcases import GUARD_MUTATIONS, ChartRun, Rendered, fullname
from tests.packaging.test_chart_rbac import rbac_grants

Obj = dict[str, Any]
NS = "devpod"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
PATCH_DEPLOYMENTS = ("apps", "deployments", "patch")
GUARDED = ("claim-guard", "claim-guard-cluster-wide")


def guard(r: Rendered) -> tuple[Obj, Obj]:
    """The rendered policy and its binding."""
    return r.one("ValidatingAdmissionPolicy"), r.one("ValidatingAdmissionPolicyBinding")


def ptc_user(r: Rendered) -> str:
    sa = r.one("ServiceAccount")["metadata"]
    return f"system:serviceaccount:{sa['namespace']}:{sa['name']}"


# --- rendering --------------------------------------------------------------------------------


def test_off_unless_enabled(scenario: Rendered) -> None:
    enabled = scenario.job.values.get("claimGuard", {}).get("enabled", False)
    guard_kinds = {"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}
    rendered = {o["kind"] for o in scenario.objects} & guard_kinds
    assert rendered == (guard_kinds if enabled else set())


@pytest.mark.parametrize("case", GUARDED)
def test_policy_and_binding_belong_to_the_release(chart_run: ChartRun, case: str) -> None:
    r: Rendered = chart_run.results[case]
    policy, binding = guard(r)
    # cluster-scoped: the release namespace in the name keeps two releases apart
    name = f"{fullname(r)}-claim-guard.{r.job.namespace}"
    assert policy["metadata"]["name"] == binding["metadata"]["name"] == name
    assert "namespace" not in policy["metadata"] and "namespace" not in binding["metadata"]
    assert binding["spec"]["policyName"] == name
    actions = r.job.values["claimGuard"].get("validationActions", ["Deny"])
    assert binding["spec"]["validationActions"] == actions
    assert policy["spec"]["failurePolicy"] == "Fail"  # a guard that cannot judge refuses


@pytest.mark.parametrize("case", GUARDED)
def test_guard_judges_ptc_in_every_namespace_it_may_patch_deployments(
    chart_run: ChartRun, case: str
) -> None:
    r: Rendered = chart_run.results[case]
    policy, binding = guard(r)
    patching = {ns for ns, grants in rbac_grants(r).items() if PATCH_DEPLOYMENTS in grants}
    assert patching, "a guard scenario must grant patch on deployments somewhere"
    # "*": cluster-wide RBAC; any namespace stands for all of them
    for ns in {n if n != "*" else "anywhere" for n in patching} | {"granted-by-hand"}:
        changed = _image_change(ns)
        verdict = admit(policy, binding, replace(changed, username=ptc_user(r)))
        assert verdict.matched, f"ptc's Deployment patches in {ns} are not judged"


@pytest.mark.parametrize("case", GUARDED)
def test_other_users_and_other_requests_are_not_judged(chart_run: ChartRun, case: str) -> None:
    r: Rendered = chart_run.results[case]
    policy, binding = guard(r)
    user = ptc_user(r)
    ns, sa = user.split(":")[2:]
    change = _image_change(NS)
    for who in (
        "kubernetes-admin",
        "system:serviceaccount:argocd:argocd-application-controller",
        f"system:serviceaccount:{ns}:{sa}-other",  # a neighbour in the release namespace
        f"system:serviceaccount:elsewhere:{sa}",  # the same name in another namespace
    ):
        assert admit(policy, binding, replace(change, username=who)) == Verdict(True, False)
    # ptc's own scale (a subresource) and delete (retention.deleteStable) are no UPDATE of the
    # Deployment resource itself
    scale_old = {"kind": "Scale", "metadata": {"name": "zai-proxy"}, "spec": {"replicas": 4}}
    scale_new = copy.deepcopy(scale_old) | {"spec": {"replicas": 2}}
    scale = replace(change, username=user, subresource="scale", old=scale_old, new=scale_new)
    assert admit(policy, binding, scale) == Verdict(True, False)
    delete = replace(change, username=user, operation="DELETE", new=None)
    assert admit(policy, binding, delete) == Verdict(True, False)


def _image_change(namespace: str) -> Request:
    old = deployment("zai-proxy", namespace, {"app": "zai-proxy"}, 4, "zai-proxy:v1", {})
    new = copy.deepcopy(old)
    new["spec"]["template"]["spec"]["containers"][0]["image"] = "evil:latest"
    return Request("", "UPDATE", namespace, "zai-proxy", old, new)


# --- the CEL, over real claims and real changes -------------------------------------------------


# What a request may change, in the order the policy's validations check them; "claim" is the
# only part ptc may change.
PARTS = ("claim", "spec", "labels", "annotations", "ownerReferences", "finalizers")
DENIED_FOR = {
    "spec": "its spec (ptc scales through deployments/scale)",
    "labels": "its labels",
    "annotations": "another annotation",
    "ownerReferences": "its ownerReferences",
    "finalizers": "its finalizers",
}


def changed_parts(old: Obj, new: Obj) -> set[str]:
    """Which PARTS differ between two Deployments (plain Python: the cases' premise)."""

    def part(obj: Obj, name: str) -> Any:
        meta = obj["metadata"]
        annotations = dict(meta.get("annotations") or {})
        claim = annotations.pop(CLAIM_ANNOTATION, None)
        return {
            "claim": claim,
            "spec": obj["spec"],
            "labels": meta.get("labels") or {},
            "annotations": annotations,
            "ownerReferences": meta.get("ownerReferences") or [],
            "finalizers": meta.get("finalizers") or [],
        }[name]

    return {name for name in PARTS if part(old, name) != part(new, name)}


@dataclass(frozen=True)
class Case:
    """A change to a Deployment, as the sandbox API server applied it."""

    old: Obj
    new: Obj
    changes: frozenset[str]  # what the change is meant to change (checked)


def container(**fields: Any) -> Obj:
    """A strategic merge patch of the zai-proxy container."""
    return {"spec": {"template": {"spec": {"containers": [{"name": "zai-proxy", **fields}]}}}}


async def _sandbox_cases(workdir: Path) -> dict[str, Case]:
    """Old and new Deployments for each change, from the sandbox API server."""
    api = ApiServer(seed=1)
    await api.start()
    _KrApi._instances.clear()
    kube = await Kube.connect(str(api.write_kubeconfig(workdir / "kubeconfig", namespace=NS)))
    cases: dict[str, Case] = {}
    try:

        def get(name: str) -> Obj:
            return copy.deepcopy(api.get("Deployment", name, NS))

        async def claim(case: str, name: str, writer: str, at: datetime, *changes: str) -> None:
            """ptc's own claim, sent by its Kube client as a new leader sends it."""
            old = get(name)
            await kube.annotate_deployment(NS, name, {CLAIM_ANNOTATION: claim_mark(writer, at)})
            cases[case] = Case(old, get(name), frozenset(changes))

        def change(
            case: str, name: str, patch: Obj, *changes: str, strategic: bool = False
        ) -> None:
            old = get(name)
            api.patch(
                "Deployment", name, patch, NS, patch_type="strategic" if strategic else "merge"
            )
            cases[case] = Case(old, get(name), frozenset(changes))

        def annotate(annotations: dict[str, str | None]) -> Obj:
            return {"metadata": {"annotations": annotations}}

        labels = {"app": "zai-proxy", "version": "v1"}
        env = {"DEPLOYMENT_VARIANT": "production"}
        api.create(deployment("zai-proxy", NS, labels, 4, "zai-proxy:v1", env, pre_stop_seconds=10))
        v2 = deployment("zai-proxy-v2", NS, labels | {"version": "v2"}, 1, "zai-proxy:v2", env)
        v2["metadata"]["annotations"] = {"team": "gateway", "note": "canary of v2"}
        api.create(v2)
        api.create(deployment("web", NS, {"app": "web"}, 1, "web:1", {}))
        assert "annotations" not in get("zai-proxy")["metadata"], "the first case needs none"

        await claim("first claim, no annotations before", "zai-proxy", "ptc-7d9f-a", T0, "claim")
        await claim("re-claim by the next leader", "zai-proxy", "ptc-7d9f-b", T0 + MINUTE, "claim")
        change("claim removed, none left", "zai-proxy", annotate({CLAIM_ANNOTATION: None}), "claim")
        await claim("claim beside other annotations", "zai-proxy-v2", "ptc-7d9f-a", T0, "claim")
        await claim("the same claim again (no change)", "zai-proxy-v2", "ptc-7d9f-a", T0)
        change("claim removed", "zai-proxy-v2", annotate({CLAIM_ANNOTATION: None}), "claim")

        change("image", "zai-proxy", container(image="evil:1"), "spec", strategic=True)
        change("command", "zai-proxy", container(command=["sh"]), "spec", strategic=True)
        claim_and_image = annotate({CLAIM_ANNOTATION: "ptc/x"}) | container(image="evil:2")
        change("claim with an image", "zai-proxy", claim_and_image, "claim", "spec", strategic=True)
        change("replicas in spec", "zai-proxy", {"spec": {"replicas": 9}}, "spec")
        change("label changed", "zai-proxy", {"metadata": {"labels": {"version": "v9"}}}, "labels")
        change("label added", "zai-proxy", {"metadata": {"labels": {"extra": "x"}}}, "labels")
        change("label removed", "zai-proxy", {"metadata": {"labels": {"extra": None}}}, "labels")
        change("annotation added", "zai-proxy", annotate({"team": "x"}), "annotations")
        change("annotation changed", "zai-proxy-v2", annotate({"team": "x"}), "annotations")
        change("annotation removed", "zai-proxy-v2", annotate({"note": None}), "annotations")
        owner = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": "1234"}
        owned = {"metadata": {"ownerReferences": [owner]}}
        change("ownerReference added", "zai-proxy", owned, "ownerReferences")
        held = {"metadata": {"finalizers": ["example.com/hold"]}}
        change("finalizer added", "zai-proxy-v2", held, "finalizers")
        first_and_other = annotate({CLAIM_ANNOTATION: "ptc/1", "x": "y"})
        change(
            "first claim with another annotation", "web", first_and_other, "claim", "annotations"
        )
    finally:
        await kube.close()
        await api.stop()
        _KrApi._instances.clear()
    return cases


@pytest.fixture(scope="module")
def sandbox_cases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Case]:
    return asyncio.run(_sandbox_cases(tmp_path_factory.mktemp("claim-guard")))


CASE_NAMES = [
    "first claim, no annotations before",
    "re-claim by the next leader",
    "claim removed, none left",
    "claim beside other annotations",
    "the same claim again (no change)",
    "claim removed",
    "image",
    "command",
    "claim with an image",
    "replicas in spec",
    "label changed",
    "label added",
    "label removed",
    "annotation added",
    "annotation changed",
    "annotation removed",
    "ownerReference added",
    "finalizer added",
    "first claim with another annotation",
]


def test_each_case_changes_what_it_says(sandbox_cases: dict[str, Case]) -> None:
    assert list(sandbox_cases) == CASE_NAMES
    for name, case in sandbox_cases.items():
        assert changed_parts(case.old, case.new) == case.changes, name


@pytest.mark.parametrize("name", CASE_NAMES)
def test_guard_admits_only_the_claim(
    chart_run: ChartRun, sandbox_cases: dict[str, Case], name: str
) -> None:
    r: Rendered = chart_run.results["claim-guard"]
    policy, binding = guard(r)
    case = sandbox_cases[name]
    request = Request(ptc_user(r), "UPDATE", NS, case.new["metadata"]["name"], case.old, case.new)
    verdict = admit(policy, binding, request)
    assert verdict.matched
    refused = [part for part in PARTS if part in case.changes and part != "claim"]
    if not refused:
        assert verdict == Verdict(True, True), verdict.message
        return
    assert not verdict.allowed and verdict.code == 403, verdict  # reason Forbidden
    policy_name = policy["metadata"]["name"]
    assert verdict.message == (
        f"ValidatingAdmissionPolicy '{policy_name}' with binding '{policy_name}' denied request: "
        "ptc may change only the ptc.dev/claim annotation of a Deployment: this request changes "
        + DENIED_FOR[refused[0]]
    )


def test_audit_mode_admits_but_records_the_violation(
    chart_run: ChartRun, sandbox_cases: dict[str, Case]
) -> None:
    r: Rendered = chart_run.results["claim-guard-cluster-wide"]  # validationActions [Warn, Audit]
    policy, binding = guard(r)
    case = sandbox_cases["image"]
    verdict = admit(
        policy, binding, Request(ptc_user(r), "UPDATE", NS, "zai-proxy", case.old, case.new)
    )
    assert verdict.allowed and verdict.matched and "changes its spec" in verdict.message


def test_a_denied_claim_is_an_api_request_refused_problem(
    chart_run: ChartRun, sandbox_cases: dict[str, Case]
) -> None:
    # What ptc makes of the API server's 403 (reason Forbidden): a problem a person must fix,
    # said in the log, `ptc status` and an ApiRequestRefused Event, retried slowly.
    r: Rendered = chart_run.results["claim-guard"]
    policy, binding = guard(r)
    case = sandbox_cases["claim with an image"]
    verdict = admit(
        policy, binding, Request(ptc_user(r), "UPDATE", NS, "zai-proxy", case.old, case.new)
    )
    message = f'deployments.apps "zai-proxy" is forbidden: {verdict.message}'
    error = error_for_status(verdict.code, message, reason="Forbidden")
    assert isinstance(error, Forbidden)
    plan = after_api_error(error, failures=1)
    assert plan.problem is not None and policy["metadata"]["name"] in plan.problem
    assert "admission policy" in plan.problem and "grant the permission" not in plan.problem
    assert plan.delay == 30.0


def misjudged(r: Rendered, cases: dict[str, Case]) -> list[str]:
    """The cases (and other users' requests) the rendered guard judges wrongly."""
    policy, binding = guard(r)
    wrong = []
    for name, case in cases.items():
        request = Request(
            ptc_user(r), "UPDATE", NS, case.new["metadata"]["name"], case.old, case.new
        )
        verdict = admit(policy, binding, request)
        if not verdict.matched or verdict.allowed != (case.changes <= {"claim"}):
            wrong.append(name)
    image = replace(_image_change(NS), username="kubernetes-admin")
    if admit(policy, binding, image) != Verdict(True, False):
        wrong.append("another user's image change")
    return wrong


def test_the_guard_as_rendered_misjudges_nothing(
    chart_run: ChartRun, sandbox_cases: dict[str, Case]
) -> None:
    assert misjudged(chart_run.results["claim-guard"], sandbox_cases) == []


@pytest.mark.parametrize("mutation", list(GUARD_MUTATIONS))
def test_the_cases_catch_a_guard_that_drifts(
    chart_run: ChartRun, sandbox_cases: dict[str, Case], mutation: str
) -> None:
    mutant: Rendered = chart_run.results[f"guard-mutant:{mutation}"]
    assert mutant.error is None, mutant.error
    assert misjudged(mutant, sandbox_cases), f"{mutation}: every case still judged right"
