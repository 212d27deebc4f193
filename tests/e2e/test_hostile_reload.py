"""Bad edits to a running controller's config: each refused, nothing stops, nothing is dropped."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from controller.shell import reload
from tests.e2e.harness import (
    CANARY,
    World,
    config_document,
    no_analysis,
    running_controller,
    sandbox_world,
)
from tests.unit.test_config_yaml import ALIAS_BOMB

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def rejections(world: World) -> int:
    return sum(
        e.get("count", 1) for e in world.controller_events() if e.get("reason") == "ConfigRejected"
    )


def bad_edits(good: dict[str, Any]) -> list[tuple[str, bytes]]:
    """(what, file content) for edits a person (or a broken pipeline) could make."""
    text = json.dumps(good)
    rng = random.Random(7)
    overflow = {**good["rollouts"][0], "steps": [{"weight": 20, "hold": "999999999d"}] * 2}
    return [
        ("ANSI colour code", text.replace('"zai-proxy"', '"\x1b[32mzai-proxy\x1b[0m"', 1).encode()),
        ("NUL byte", text.encode() + b"\x00"),
        ("form feed", b"\x0c" + text.encode()),
        ("deep nesting", b"rollouts: " + b"[" * 300 + b"]" * 300),
        ("alias bomb", ALIAS_BOMB.encode()),
        ("empty file", b""),
        ("holds past timedelta", json.dumps({**good, "rollouts": [overflow]}).encode()),
        ("binary garbage", bytes(rng.randrange(256) for _ in range(4096))),
        ("two megabytes", b"rollouts: []\n" + b"#" * 2_000_000 + b"\n"),
        ("rollouts is a number", b"rollouts: 5\n"),
        ("a truncated write", text[: len(text) // 2].encode()),
    ]


async def test_every_bad_edit_is_refused_and_the_controller_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reload, "RELOAD_INTERVAL", 0.2)
    config_file = tmp_path / "config.yaml"
    spec = no_analysis(steps=[{"weight": 25, "hold": "1h"}], flip={"bake": "1s"})
    async with (
        sandbox_world(tmp_path, prometheus=False) as world,
        running_controller(world, spec, config_file=config_file) as ctl,
    ):
        await world.wait_for(
            lambda s: s is not None and s.get("stepReachedAt") is not None, 60, "step 1"
        )
        good = config_document(world, spec)
        edits = bad_edits(good)
        for what, content in edits:
            before = rejections(world)
            config_file.write_bytes(content)
            await world.wait_for(lambda _s, n=before: rejections(world) > n, 20, what)
            assert ctl.generation == 1, what
            assert not ctl._stop.is_set(), f"the controller stopped after: {what}"
            state = world.state()
            assert state is not None and state["phase"] in ("progressing", "holding"), what
            assert world.replicas(CANARY)[0] >= 1, what
        # Even a loader that crashes outright (a bug) is a refused reload, not a dead task.
        monkeypatch.setattr(reload, "load_config", _crash)
        before = rejections(world)
        config_file.write_text(json.dumps(good) + "\n")
        await world.wait_for(lambda _s: rejections(world) > before, 20, "a crashing loader")
        assert "RuntimeError" in (ctl.last_reload_error or "")
        monkeypatch.undo()
        monkeypatch.setattr(reload, "RELOAD_INTERVAL", 0.2)
        # Then a good edit applies: the 1h hold becomes 1s and the rollout completes.
        faster = no_analysis(steps=[{"weight": 25, "hold": "1s"}], flip={"bake": "1s"})
        config_file.write_text(json.dumps(config_document(world, faster)))
        await world.wait_phase("completed", timeout=60)
        assert ctl.generation == 2
        messages = [
            e["message"] for e in world.controller_events() if e.get("reason") == "ConfigRejected"
        ]
        assert rejections(world) == len(edits) + 1
        assert any("aliases expand to more than" in m for m in messages)
        assert any("U+001B ESC" in m for m in messages)
        assert any("the file is empty: no rollouts" in m for m in messages)


def _crash(*_args: object, **_kwargs: object) -> Any:
    raise RuntimeError("loader bug")


async def test_a_rollout_removed_while_in_flight_is_driven_to_a_safe_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reload, "RELOAD_INTERVAL", 0.2)
    config_file = tmp_path / "config.yaml"
    spec = no_analysis(
        steps=[{"weight": 25, "hold": "3s"}, {"weight": 50, "hold": "2s"}],
        flip={"bake": "1s"},
        retention={"scaleDownDelay": "1s"},
    )
    async with (
        sandbox_world(tmp_path, prometheus=False) as world,
        running_controller(world, spec, config_file=config_file) as ctl,
    ):
        await world.wait_for(
            lambda s: s is not None and s.get("stepReachedAt") is not None, 60, "step 1"
        )
        config_file.write_text(json.dumps(config_document(world)))  # rollouts: []
        await world.wait_for(
            lambda _s: any(e.get("reason") == "NoLongerConfigured" for e in world.events()),
            20,
            "NoLongerConfigured",
        )
        event = next(e for e in world.events() if e.get("reason") == "NoLongerConfigured")
        assert event["type"] == "Warning" and "driven to a safe end" in event["message"]
        assert [r.spec.name for r in ctl.reconcilers] == ["zai-proxy"]
        # It goes on through step 2, the flip and the bake on the spec it started with ...
        state = await world.wait_phase("completed", timeout=60)
        assert [h["decision"] for h in state["history"]].count("step-reached") == 2
        assert world.service()["spec"]["selector"]["version"] == "v2"
        # ... and only then is it let go.
        await world.wait_for(lambda _s: not ctl.reconcilers, 10, "the reconciler let go")


async def test_removing_a_rollout_that_has_not_started_lets_it_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reload, "RELOAD_INTERVAL", 0.2)
    config_file = tmp_path / "config.yaml"
    # A canary Deployment that does not exist fails preflight: nothing has moved.
    spec = no_analysis(canary={"deployment": "no-such-deployment", "version": "v9"})
    async with (
        sandbox_world(tmp_path, prometheus=False) as world,
        running_controller(world, spec, config_file=config_file) as ctl,
    ):
        await world.wait_for(lambda s: s is not None, 30, "a state")
        config_file.write_text(json.dumps(config_document(world)))
        await world.wait_for(lambda _s: not ctl.reconcilers, 20, "the reconciler let go")
        assert not any(e.get("reason") == "NoLongerConfigured" for e in world.events())
