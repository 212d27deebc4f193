"""Preflight: pods ptc terminates while they serve need a preStop delay (warn, or refuse)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from controller.core.objects import DeploymentInfo, deployment_info
from controller.core.prestop import PreStopHook, pre_stop_hook
from controller.core.rollout import Observed, PreflightResult, decide
from controller.core.state import Phase
from controller.core.termination import stable_terminated_while_serving
from controller.sandbox.scenarios import deployment
from controller.shell.preflight import check_world
from tests.unit.rollout_model import T0, Cluster, make_spec

SHARED = {"app": "zai-proxy"}


def dep(
    name: str,
    labels: dict[str, str],
    *,
    pre_stop: dict[str, Any] | None = None,
    grace: int | None = None,
    sidecar: dict[str, Any] | None = None,
) -> DeploymentInfo:
    """A seed-like Deployment as the controller parses it."""
    raw = deployment(name, "devpod", labels, 4, "ronaldraygun/zai-proxy:1.1.0", {})
    spec = raw["spec"]["template"]["spec"]
    if pre_stop is not None:
        spec["containers"][0]["lifecycle"] = {"preStop": pre_stop}
    if grace is not None:
        spec["terminationGracePeriodSeconds"] = grace
    if sidecar is not None:
        spec["containers"].append(sidecar)
    return deployment_info(raw)


def world(
    *,
    stable_pre_stop: dict[str, Any] | None = None,
    canary_pre_stop: dict[str, Any] | None = None,
    **spec: Any,
) -> tuple[Any, DeploymentInfo, DeploymentInfo]:
    rollout = make_spec(**spec)
    stable = dep("zai-proxy", SHARED, pre_stop=stable_pre_stop)
    canary = dep("zai-proxy-v2", {**SHARED, "version": "v2"}, pre_stop=canary_pre_stop)
    return rollout, stable, canary


def termination_notes(texts: tuple[str, ...]) -> list[str]:
    return [t for t in texts if "preStop" in t]


def test_the_seeds_deployments_get_a_warning_naming_the_exact_patch() -> None:
    spec, stable, canary = world()
    findings = check_world(spec, SHARED, stable, canary, [])
    assert findings.problems == ()
    stable_note, canary_note = termination_notes(findings.warnings)
    assert stable_note.startswith("stable zai-proxy: container zai-proxy has no preStop delay")
    assert "scales it down while it serves (standard shifting)" in stable_note
    patch = stable_note.split("kubectl -n devpod patch deployment zai-proxy -p '", 1)[1]
    body = json.loads(patch.split("'", 1)[0])
    assert body == {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {"name": "zai-proxy", "lifecycle": {"preStop": {"sleep": {"seconds": 10}}}}
                    ]
                }
            }
        }
    }
    assert '["sleep", "10"]' in stable_note  # the exec form for clusters before 1.30
    # canary too: a rollback scales it down behind the shared selector (stable has no version)
    assert canary_note.startswith("canary zai-proxy-v2: container zai-proxy has no preStop")
    assert "rollback" in canary_note
    assert all(len(w) <= 1024 for w in findings.warnings)  # fits an Event's message
    # the decision record keeps each warning's first sentence
    assert [h for h in findings.headlines if "preStop" in h] == [
        "stable zai-proxy: container zai-proxy has no preStop delay, and ptc scales it down "
        "while it serves (standard shifting)",
        "canary zai-proxy-v2: container zai-proxy has no preStop delay, and a rollback scales it "
        "down while it still serves (stable has no `version`, so the rollback selector keeps "
        "matching its pods)",
    ]


def test_require_pre_stop_refuses_instead_of_warning() -> None:
    spec, stable, canary = world(preflight={"requirePreStop": True})
    findings = check_world(spec, SHARED, stable, canary, [])
    assert len(findings.problems) == 2
    assert all("preflight.requirePreStop" in p and "no preStop" in p for p in findings.problems)
    assert termination_notes(findings.warnings) == []


@pytest.mark.parametrize(
    "pre_stop",
    [
        {"sleep": {"seconds": 10}},
        {"exec": {"command": ["sleep", "10"]}},
        {"exec": {"command": ["/bin/sh", "-c", "sleep 10"]}},
        {"exec": {"command": ["/app/drain", "--wait"]}},  # unknown length: trusted
        {"httpGet": {"path": "/drain", "port": 8080}},
    ],
    ids=["sleep-action", "exec-sleep", "shell-sleep", "exec-other", "http"],
)
def test_any_pre_stop_hook_satisfies_the_check(pre_stop: dict[str, Any]) -> None:
    spec, stable, canary = world(
        stable_pre_stop=pre_stop, canary_pre_stop=pre_stop, preflight={"requirePreStop": True}
    )
    findings = check_world(spec, SHARED, stable, canary, [])
    assert findings.problems == () and termination_notes(findings.warnings) == []


def test_surge_shifting_terminates_no_serving_stable_pod() -> None:
    surge = make_spec(
        shifting="surge",
        maxSurge="100%",
        steps=[{"weight": 25, "hold": "1m"}, {"weight": 50, "hold": "1m"}],
    )
    _, stable, canary = world()
    for findings in (
        check_world(surge, SHARED, stable, canary, []),  # read from the rollout's `shifting`
        check_world(make_spec(), SHARED, stable, canary, [], stable_serving=False),
    ):
        (note,) = termination_notes(findings.warnings)
        assert note.startswith("canary zai-proxy-v2")  # a rollback still removes canary pods
    assert not stable_terminated_while_serving(surge)
    assert stable_terminated_while_serving(make_spec())
    assert stable_terminated_while_serving(make_spec(shifting="standard"))


def test_a_stable_version_keeps_the_rollback_off_serving_canary_pods() -> None:
    spec, stable, canary = world(stable={"deployment": "zai-proxy", "version": "v1"})
    stable = dep("zai-proxy", {**SHARED, "version": "v1"})
    findings = check_world(spec, SHARED, stable, canary, [])
    (note,) = termination_notes(findings.warnings)
    assert note.startswith("stable zai-proxy:")


@pytest.mark.parametrize(
    ("pre_stop", "grace", "warned"),
    [
        ({"sleep": {"seconds": 30}}, None, True),  # the default grace is 30 s
        ({"sleep": {"seconds": 29}}, None, False),
        ({"exec": {"command": ["sleep", "40"]}}, 30, True),
        ({"exec": {"command": ["sh", "-c", "sleep 1m"]}}, 60, True),
        ({"exec": {"command": ["sleep", "10"]}}, 15, False),
    ],
)
def test_a_pre_stop_sleep_as_long_as_the_grace_period_is_cut_short(
    pre_stop: dict[str, Any], grace: int | None, warned: bool
) -> None:
    spec = make_spec()
    stable = dep("zai-proxy", SHARED, pre_stop=pre_stop, grace=grace)
    canary = dep("zai-proxy-v2", {**SHARED, "version": "v2"}, pre_stop=pre_stop, grace=grace)
    findings = check_world(spec, SHARED, stable, canary, [])
    cut = [w for w in findings.warnings if "kills the pod mid-hook" in w]
    assert len(cut) == (2 if warned else 0)
    if warned:
        assert cut[0].startswith("stable zai-proxy: container zai-proxy's preStop sleeps")
        assert "set it above the sleep" in cut[0]
    assert findings.problems == ()


def test_a_short_grace_period_is_raised_in_the_patch() -> None:
    spec = make_spec()
    stable = dep("zai-proxy", SHARED, grace=5)
    canary = dep("zai-proxy-v2", {**SHARED, "version": "v2"}, pre_stop={"sleep": {"seconds": 3}})
    (note,) = termination_notes(check_world(spec, SHARED, stable, canary, []).warnings)
    assert '"terminationGracePeriodSeconds":15' in note


def test_only_containers_that_serve_need_the_delay() -> None:
    spec = make_spec()
    log_shipper = {"name": "log-shipper", "image": "fluent-bit:3"}  # no port: takes no traffic
    stable = dep("zai-proxy", SHARED, pre_stop={"sleep": {"seconds": 10}}, sidecar=log_shipper)
    canary = dep(
        "zai-proxy-v2",
        {**SHARED, "version": "v2"},
        pre_stop={"sleep": {"seconds": 10}},
        sidecar={**log_shipper, "ports": [{"containerPort": 2020}]},
    )
    (note,) = termination_notes(check_world(spec, SHARED, stable, canary, []).warnings)
    assert note.startswith("canary zai-proxy-v2: container log-shipper has no preStop delay")
    assert '"name":"log-shipper"' in note and '"name":"zai-proxy"' not in note


@pytest.mark.parametrize(
    ("container", "hook"),
    [
        ({}, None),
        ({"lifecycle": {}}, None),
        ({"lifecycle": {"postStart": {"sleep": {"seconds": 5}}}}, None),
        ({"lifecycle": {"preStop": {"sleep": {"seconds": 5}}}}, PreStopHook("sleep", 5.0)),
        (
            {"lifecycle": {"preStop": {"exec": {"command": ["sleep", "0.5"]}}}},
            PreStopHook("exec", 0.5),
        ),
        (
            {"lifecycle": {"preStop": {"exec": {"command": ["sleep", "2m"]}}}},
            PreStopHook("exec", 120.0),
        ),
        (
            {"lifecycle": {"preStop": {"exec": {"command": ["/bin/bash", "-c", "exec sleep 7"]}}}},
            PreStopHook("exec", 7.0),
        ),
        (
            {"lifecycle": {"preStop": {"exec": {"command": ["sh", "-c", "nginx -s quit"]}}}},
            PreStopHook("exec", None),
        ),
        (
            {"lifecycle": {"preStop": {"exec": {"command": ["sleep", "soon"]}}}},
            PreStopHook("exec", None),
        ),
        ({"lifecycle": {"preStop": {"httpGet": {"port": 80}}}}, PreStopHook("httpGet", None)),
        ({"lifecycle": {"preStop": "junk"}}, None),
        ({"lifecycle": {"preStop": {"sleep": {"seconds": "ten"}}}}, PreStopHook("sleep", None)),
    ],
)
def test_pre_stop_hooks_are_read_with_their_delay(
    container: dict[str, Any], hook: PreStopHook | None
) -> None:
    assert pre_stop_hook(container) == hook


def test_the_warnings_reach_the_decision_record() -> None:
    spec = make_spec()
    obs = Cluster().observed(T0)
    started = decide(spec, None, obs, None, T0).state
    result = PreflightResult(T0, warnings=("stable zai-proxy: container zai-proxy has no preStop",))
    passed = decide(
        spec, started, Observed(obs.stable, obs.canary, obs.selector, preflight=result), None, T0
    )
    assert passed.state.phase is Phase.PROGRESSING
    record = passed.state.history[-1]
    assert record.decision == "preflight-passed"
    assert "warning: stable zai-proxy: container zai-proxy has no preStop" in record.reason
    assert record.reason.endswith("(full text: PreflightWarning Events)")
    quiet = PreflightResult(T0)
    plain = decide(
        spec, started, Observed(obs.stable, obs.canary, obs.selector, preflight=quiet), None, T0
    )
    assert "warning" not in plain.state.history[-1].reason
