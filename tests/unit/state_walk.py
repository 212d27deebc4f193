"""Seeded random walks of `decide()` over the modelled cluster, for the state v1 -> v2 golden test.

The same walk ran once against the last ptc that wrote state v1 and its decisions and encoded
states were saved (`tests/data/state_v1_walks.json.gz`, see `capture_v1_walks`). The test runs
it again against this ptc and checks each step decided the same and each saved v1 state decodes
to the state this ptc wrote. Only API common to both versions is used here (no state fields
besides `phase`), so that the walk is the same walk on both.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from controller.core.analysis.evaluate import Verdict
from controller.core.rollout import Command, CommandKind, Decision
from controller.core.rollout.types import Wait
from tests.unit.rollout_model import Driver, InvariantViolation, make_spec

SEEDS = range(30)
STEPS = 100

SPECS: tuple[dict[str, Any], ...] = (
    {},
    {
        "steps": [
            {"weight": 25, "hold": "1m", "manualGate": True},
            {"weight": 50, "hold": "30s"},
        ],
        "rollback": {"cooldown": "1m", "maxAttempts": 3, "autoRetry": True},
        "retention": {"scaleDownDelay": "2m", "deleteStable": True},
    },
    {
        "analysis": {
            "interval": "10s",
            "maxHold": "1m",
            "onInconclusive": "rollback",
            "capacityGate": {
                "capacity": {"query": "sum(limit)"},
                "demand": {"query": "sum(rate(req[1m]))"},
            },
            "metrics": [
                {
                    "name": "bad-gateway",
                    "counterRatio": {
                        "metric": "zai_proxy_requests_total",
                        "numerator": {"status_code": "502"},
                    },
                    "max": 0.05,
                }
            ],
        },
    },
)

VERDICTS = (Verdict.PASS,) * 5 + (Verdict.FAIL, Verdict.INCONCLUSIVE, Verdict.ERROR, None)
JUMPS = (1, 5, 10, 30, 61, 300, 700)


@dataclass(frozen=True)
class Step:
    """One decision of a walk: what `decide()` returned, in comparable form."""

    action: str
    reason: str
    event: str | None
    decision: Decision


def walk(seed: int) -> Iterator[Step]:
    """The decisions of walk `seed` (deterministic)."""
    rng = random.Random(seed)
    driver = Driver(make_spec(**SPECS[seed % len(SPECS)]))
    for i in range(STEPS):
        roll = rng.random()
        command = None
        if roll < 0.07:
            kind = rng.choice(list(CommandKind))
            if driver.state is not None and driver.state.phase.terminal and rng.random() < 0.5:
                kind = CommandKind.RETRY
            command = Command(kind, f"cmd-{seed}-{i}", by="alice", detail=rng.choice(("", "why")))
        elif roll < 0.12:
            driver.verdict = rng.choice(VERDICTS)
        elif roll < 0.16:
            driver.capacity = rng.choice((None, 0.0, 1e6))
        elif roll < 0.17:
            driver.cluster.canary_exists = False
            driver.cluster.canary_spec = driver.cluster.canary_ready = 0
        elif roll < 0.172:
            driver.cluster.stable_exists = False
        elif roll < 0.185:
            driver.lose_next_persist = True
        elif roll < 0.22:
            driver.now += timedelta(seconds=rng.choice(JUMPS))
        try:
            d = driver.step(command)
        except InvariantViolation:
            return  # the same on both versions; the walk ends there
        event = f"{d.event.kind.value}: {d.event.message}" if d.event is not None else None
        yield Step(repr(d.action), d.reason, event, d)
        if isinstance(d.action, Wait):
            driver.cluster.ready_up(rng.randint(0, 3), rng.randint(0, 3))
            if d.action.until is not None and rng.random() < 0.7:
                driver.now = max(driver.now, d.action.until)
            else:
                driver.now += timedelta(seconds=rng.choice(JUMPS))
        if rng.random() < 0.03:
            driver.cluster.canary_exists = driver.cluster.stable_exists = True
