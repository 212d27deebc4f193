"""The one zai-proxy rollout builder: valid config for every caller, overrides replace keys."""

from __future__ import annotations

from controller.core.config.model import Config
from controller.ops.demo import demo_rollout
from controller.sandbox.rollouts import bad_gateway_ratio, rate_limited_ratio, zai_proxy_rollout
from tests.e2e.harness import no_analysis, rollout_spec


def validate(spec: dict[str, object]) -> Config:
    return Config.model_validate({"rollouts": [spec]})


def test_the_seed_shape_with_the_callers_steps_and_analysis() -> None:
    spec = zai_proxy_rollout(
        steps=[{"weight": 50, "hold": "1m"}],
        analysis={"metrics": [bad_gateway_ratio(), rate_limited_ratio(for_="5s")]},
    )
    rollout = validate(spec).rollouts[0]
    assert (rollout.namespace, rollout.service, rollout.replicas) == ("devpod", "zai-proxy", 4)
    assert rollout.stable.deployment == "zai-proxy" and rollout.canary.version == "v2"
    assert [m.name for m in rollout.analysis.metrics] == ["bad-gateway-ratio", "rate-limited-ratio"]
    assert rollout.analysis.metrics[1].compare is not None
    assert rollout.preflight.metrics.at_start == ["zai_proxy_build_info"]


def test_overrides_replace_whole_keys() -> None:
    spec = zai_proxy_rollout(steps=[], analysis={}, replicas=1, canary={"deployment": "c"})
    assert spec["replicas"] == 1 and spec["canary"] == {"deployment": "c"}


def test_every_caller_builds_a_valid_rollout() -> None:
    validate(rollout_spec())
    validate(no_analysis(steps=[{"weight": 50, "hold": "1h"}]))
    for speed in (1.0, 4.0):
        validate(
            demo_rollout(
                name="zai-proxy",
                stable={"deployment": "zai-proxy"},
                canary={"deployment": "zai-proxy-v2", "version": "v2"},
                speed=speed,
            )
        )
