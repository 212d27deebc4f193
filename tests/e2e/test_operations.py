"""Operating ptc: manual commands through the CLI, and config hot reload."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from controller.core.config.yamlread import read_yaml
from tests.e2e.harness import (
    BAD_GATEWAY,
    CANARY,
    NS,
    STABLE,
    World,
    config_document,
    no_analysis,
    rollout_spec,
    running_controller,
    sandbox_world,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


async def ptc(world: World, *args: str) -> tuple[int, str, str]:
    """Run the ptc CLI as a user would (commands are given by "alice")."""
    assert world.sandbox.kubeconfig is not None
    who = () if args[0] == "status" else ("--by", "alice")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "controller.ops.cli",
        *args,
        "--namespace",
        NS,
        "--kubeconfig",
        str(world.sandbox.kubeconfig),
        *who,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_pause_resume_promote_abort_retry_through_the_cli(tmp_path: Path) -> None:
    spec = no_analysis(
        steps=[{"weight": 25, "hold": "1h"}, {"weight": 50, "hold": "1h"}],
        rollback={"cooldown": "1s", "maxAttempts": 3},
    )
    async with sandbox_world(tmp_path, prometheus=False) as world, running_controller(world, spec):
        await world.wait_for(lambda s: s is not None and s.get("hold") is not None, 60, "step 1")
        code, out, _ = await ptc(world, "pause", "zai-proxy")
        assert code == 0 and "pause applied" in out and "paused" in out
        state = world.state()
        assert state is not None and state["phase"] == "paused"
        assert state["history"][-1]["by"] == "alice"

        code, out, _ = await ptc(world, "pause", "zai-proxy")  # already paused: refused
        assert code == 1 and "pause refused" in out

        code, out, _ = await ptc(world, "resume", "zai-proxy")
        assert code == 0 and "progressing" in out

        # promote skips the 1h hold: step 2 starts at once.
        code, out, _ = await ptc(world, "promote", "zai-proxy")
        assert code == 0
        await world.wait_for(lambda s: s is not None and s["step"] == 1, 30, "step 2")

        code, out, _ = await ptc(world, "abort", "zai-proxy")
        assert code == 0 and "rolling-back" in out
        await world.wait_phase("rolled-back", timeout=30)
        assert world.replicas(CANARY)[0] == 0 and world.replicas(STABLE) == (4, 4)

        await asyncio.sleep(1.1)  # the cooldown
        code, out, _ = await ptc(world, "retry", "zai-proxy")
        # The retry's own record answers (not the abort's); the phase is wherever the rollout
        # got to by the time the CLI read the acknowledgment.
        assert code == 0 and "started, attempt 2 (retry by alice)" in out, out
        state = await world.wait_for(
            lambda s: s is not None and s["attempt"] == 2 and s["phase"] == "progressing",
            30,
            "attempt 2",
        )
        assert state is not None

        code, _, err = await ptc(world, "pause", "no-such-rollout")
        assert code == 2 and "no rollout 'no-such-rollout'" in err


async def test_status_json_mid_rollout_from_the_cluster_and_the_controller(
    tmp_path: Path,
) -> None:
    spec = no_analysis(steps=[{"weight": 50, "hold": "1h"}])
    async with (
        sandbox_world(tmp_path, prometheus=False) as world,
        running_controller(world, spec) as ctl,
    ):
        await world.wait_for(lambda s: s is not None and s.get("hold") is not None, 60, "step 1")
        code, out, err = await ptc(world, "status", "zai-proxy", "-o", "json")
        assert code == 0, err
        doc = json.loads(out)
        for key in (
            "name",
            "namespace",
            "service",
            "stable",
            "canary",
            "phase",
            "step",
            "steps",
            "attempt",
            "message",
            "waiting",
            "weight",
            "replicas",
            "selector",
            "hold",
            "analysis",
            "decisions",
            "writer",
            "configGeneration",
            "pendingConfig",
        ):
            assert key in doc, key
        assert doc["phase"] == "progressing" and doc["steps"] == 1
        assert (doc["stable"], doc["canary"]) == (STABLE, CANARY)
        # No trafficShare configured: nothing observed (not 0 %).
        assert doc["weight"] == {"desired": 50.0, "actual": 50.0, "observed": None}
        assert doc["replicas"]["canary"] == {"spec": 2, "ready": 2}
        assert 0.0 <= doc["hold"]["progress"] < 0.1
        assert doc["decisions"][-1]["decision"] == "step-reached"
        # -o yaml: the same document, read back by the config's own YAML reader.
        code, out, err = await ptc(world, "status", "zai-proxy", "-o", "yaml")
        assert code == 0, err
        as_yaml = read_yaml(out).data
        assert list(as_yaml) == list(doc)
        assert (as_yaml["replicas"], as_yaml["selector"]) == (doc["replicas"], doc["selector"])
        # From the cluster, the decisions come from the history ConfigMap too (all of them).
        assert doc["decisions"][0]["decision"] == "started"
        assert doc["history"] == {"source": "configmap", "problem": None}
        # The same from the controller's API (which knows what it waits on).
        url = ctl.server.url
        code, out, err = await ptc(world, "status", "zai-proxy", "-o", "json", "--controller", url)
        assert code == 0, err
        live = json.loads(out)
        assert live["phase"] == "progressing" and "holding until" in live["waiting"]
        # Only the controller knows how far behind it runs: the lag, and a line under the table.
        assert live["lag"]["reconcileSeconds"] is not None
        code, out, err = await ptc(world, "status", "--controller", url)
        assert code == 0 and "controller lag: reconcile" in out, err
        code, out, _ = await ptc(world, "status")
        assert code == 0 and "zai-proxy → zai-proxy-v2" in out and "progressing" in out
        code, _, err = await ptc(world, "status", "nope")
        assert code == 2 and "no rollout named 'nope'" in err


async def test_a_command_is_applied_once_across_a_restart(tmp_path: Path) -> None:
    spec = no_analysis(steps=[{"weight": 25, "hold": "1h"}])
    async with sandbox_world(tmp_path, prometheus=False) as world:
        async with running_controller(world, spec, identity="first"):
            await world.wait_for(
                lambda s: s is not None and s.get("hold") is not None, 60, "step 1"
            )
            code, _, _ = await ptc(world, "pause", "zai-proxy")
            assert code == 0
        # A new controller sees the same annotation: the pause is not applied again.
        async with running_controller(world, spec, identity="second"):
            await asyncio.sleep(1.0)
            code, _, _ = await ptc(world, "resume", "zai-proxy")
            assert code == 0
            await asyncio.sleep(1.0)
            state = world.state()
            assert state is not None and state["phase"] == "progressing"
            pauses = [h for h in state["history"] if h["decision"] == "paused"]
            assert len(pauses) == 1


@pytest.mark.prometheus
async def test_hot_reload_bad_config_is_refused_and_thresholds_apply(tmp_path: Path) -> None:
    config_file = tmp_path / "config.yaml"
    spec = rollout_spec(steps=[{"weight": 25, "hold": "1h"}])
    async with (
        sandbox_world(tmp_path) as world,
        running_controller(world, spec, config_file=config_file) as ctl,
    ):
        await world.wait_for(lambda s: s is not None and s.get("hold") is not None, 120, "step 1")
        # An invalid edit: refused, the last good config stays, an Event names the problem.
        bad = config_document(world, {**spec, "steps": [{"weight": 25, "holdd": "1m"}]})
        config_file.write_text(json.dumps(bad))
        await world.wait_for(
            lambda s: any(e.get("reason") == "ConfigRejected" for e in world.controller_events()),
            20,
            "ConfigRejected",
        )
        # One Event about the controller (on its Lease), none per rollout.
        [event] = [e for e in world.controller_events() if e.get("reason") == "ConfigRejected"]
        assert not [e for e in world.events() if e.get("reason") == "ConfigRejected"]
        assert "holdd" in event["message"] and "did you mean 'hold'" in event["message"]
        assert str(config_file) in event["message"]
        assert ctl.generation == 1 and ctl.last_reload_error
        # A valid edit applies at the next evaluation: 3% of 502s on v2 passes max 0.05, and
        # fails once max drops to 0.01.
        world.sandbox.faults.update(NS, CANARY, error_502=0.03)
        await asyncio.sleep(8)
        state = world.state()
        assert state is not None and state["phase"] in ("progressing", "holding")
        stricter = {**BAD_GATEWAY, "max": 0.01}
        good = config_document(
            world, {**spec, "analysis": {**spec["analysis"], "metrics": [stricter]}}
        )
        config_file.write_text(json.dumps(good))
        state = await world.wait_phase("rolled-back", timeout=60)
        rollback = next(h for h in state["history"] if h["decision"] == "rollback")
        assert "<= 0.01" in rollback["reason"]
        assert ctl.generation == 2
        assert any(e.get("reason") == "ConfigApplied" for e in world.events())


async def test_reload_with_a_new_canary_is_deferred_until_the_rollout_ends(tmp_path: Path) -> None:
    config_file = tmp_path / "config.yaml"
    spec = no_analysis(
        steps=[{"weight": 25, "hold": "4s"}],
        flip={"bake": "1s"},
        retention={"scaleDownDelay": "1s"},
    )
    async with (
        sandbox_world(tmp_path, prometheus=False) as world,
        running_controller(world, spec, config_file=config_file),
    ):
        await world.wait_for(lambda s: s is not None and s.get("hold") is not None, 60, "step 1")
        # v3 does not exist: if it were applied now, the rollout in flight would be lost.
        v3 = {**spec, "canary": {"deployment": "zai-proxy-v3", "version": "v3"}}
        config_file.write_text(json.dumps(config_document(world, v3)))
        await world.wait_for(
            lambda s: any(e.get("reason") == "ConfigDeferred" for e in world.events()),
            20,
            "ConfigDeferred",
        )
        # The rollout in flight completes on the spec it started with ...
        await world.wait_phase("completed", timeout=60)
        assert world.service()["spec"]["selector"]["version"] == "v2"
        # ... then the new target starts (and fails its preflight: v3 does not exist).
        state = await world.wait_phase("failed", timeout=30)
        assert "zai-proxy-v3" in state["message"]


async def test_preflight_probes_canary_pods_and_refuses_foreign_pods(tmp_path: Path) -> None:
    spec = no_analysis(steps=[{"weight": 25, "hold": "1h"}])
    async with sandbox_world(tmp_path, prometheus=False) as world:
        # A stray pod carrying the shared selector's labels would receive traffic.
        world.sandbox.api.create(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": "debug-shell",
                    "namespace": NS,
                    "labels": {"app": "zai-proxy"},
                },
                "spec": {"containers": [{"name": "sh", "image": "busybox"}]},
            }
        )
        async with running_controller(world, spec):
            state = await world.wait_phase("failed", timeout=30)
        assert "debug-shell" in state["message"] and "shared selector" in state["message"]
        assert world.replicas(CANARY)[0] == 0  # nothing was acted on


async def test_preflight_refuses_a_rollout_an_autoscaler_would_fight(tmp_path: Path) -> None:
    spec = no_analysis(steps=[{"weight": 25, "hold": "1h"}])
    async with sandbox_world(tmp_path, prometheus=False) as world:
        world.sandbox.api.create(
            {
                "apiVersion": "autoscaling/v2",
                "kind": "HorizontalPodAutoscaler",
                "metadata": {"name": "zai-proxy", "namespace": NS},
                "spec": {
                    "scaleTargetRef": {
                        "apiVersion": "apps/v1",
                        "kind": "Deployment",
                        "name": STABLE,
                    },
                    "minReplicas": 4,
                    "maxReplicas": 4,
                },
            }
        )
        async with running_controller(world, spec):
            state = await world.wait_phase("failed", timeout=30)
        assert "HorizontalPodAutoscaler zai-proxy scales the stable Deployment" in state["message"]
        assert world.replicas(CANARY)[0] == 0  # nothing was acted on


async def test_preflight_probes_ready_canary_pods(tmp_path: Path) -> None:
    spec = no_analysis(steps=[{"weight": 25, "hold": "1h"}])
    # A family required from process start that is still missing past startGrace fails.
    spec["preflight"] = {
        "metrics": {"atStart": ["zai_proxy_build_info", "no_such_metric"]},
        "startGrace": "1s",
    }
    async with sandbox_world(tmp_path, prometheus=False) as world:
        world.sandbox.api.patch("deployments", CANARY, {"spec": {"replicas": 1}}, NS)
        await world.wait_for(lambda s: world.replicas(CANARY) == (1, 1), 10, "a Ready canary")
        async with running_controller(world, spec):
            state = await world.wait_phase("failed", timeout=30)
        # The probe reached the pod over HTTP and found its /metrics lacking one name.
        assert "/metrics lacks no_such_metric" in state["message"]
