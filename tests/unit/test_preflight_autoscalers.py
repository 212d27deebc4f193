"""Preflight refuses a rollout whose stable or canary Deployment an HPA scales."""

from __future__ import annotations

from typing import Any

from controller.core.config.model import Rollout
from controller.shell.kube import AutoscalerInfo
from controller.shell.preflight import check_autoscalers


def spec(**preflight: object) -> Rollout:
    return Rollout.model_validate(
        {
            "name": "zai-proxy",
            "namespace": "devpod",
            "service": "zai-proxy",
            "stable": {"deployment": "zai-proxy"},
            "canary": {"deployment": "zai-proxy-v2", "version": "v2"},
            "steps": [{"weight": 50}],
            "preflight": preflight,
        }
    )


def hpa(name: str, target: str, kind: str = "Deployment", low: int = 1, high: int = 5) -> Any:
    return AutoscalerInfo(name, kind, target, low, high)


def test_an_hpa_on_either_deployment_is_a_problem_naming_the_fix() -> None:
    found = check_autoscalers(
        spec(), [hpa("v2", "zai-proxy-v2", low=3, high=3), hpa("v1", "zai-proxy")]
    )
    assert found.warnings == ()
    assert [p.split(" (")[0] for p in found.problems] == [
        "HorizontalPodAutoscaler v1 scales the stable Deployment zai-proxy",
        "HorizontalPodAutoscaler v2 scales the canary Deployment zai-proxy-v2",
    ]
    assert "(3-3 replicas)" in found.problems[1]
    assert "kubectl -n devpod delete hpa v2" in found.problems[1]
    assert found.problems[1].endswith("or set preflight.allowAutoscalers")


def test_other_targets_are_not_ours() -> None:
    assert check_autoscalers(
        spec(),
        [
            hpa("web", "web"),
            hpa("rs", "zai-proxy", kind="ReplicaSet"),  # not the Deployment ptc scales
        ],
    ) == check_autoscalers(spec(), [])


def test_allow_autoscalers_turns_the_problem_into_a_warning() -> None:
    found = check_autoscalers(spec(allowAutoscalers=True), [hpa("v1", "zai-proxy")])
    assert found.problems == ()
    assert len(found.warnings) == 1 and "scales the stable Deployment" in found.warnings[0]
