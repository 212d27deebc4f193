"""Issue 15 B: the canary's observed request share against its desired weight.

The judgement (`check_share`) is a table plus a property; decide() is stepped through time
with a `Driver`: a step whose canary receives far less than its weight holds with the observed
share in its reason and decision record, maxHold's policy applies, and a share that comes back
into tolerance lets the step pass.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.core.analysis.evaluate import Sample, Verdict
from controller.core.analysis.share import ShareReading, check_share
from controller.core.rollout import Wait
from controller.core.state import Holding, HoldKind, Phase, decode_record, record_json
from controller.core.status import status_document
from controller.ops.status_view import render_text
from controller.shell.metrics import Metrics
from tests.unit.rollout_model import T0, Driver, make_spec


def reading(
    canary: float | None, service: float | None, requests: float | None = 1000
) -> ShareReading:
    return ShareReading(Sample(canary), Sample(service, requests=requests))


# ---------------------------------------------------------------------------------------------
# The judgement

CASES = [
    # (desired %, reading, tolerance, minRequests) -> (off, observed %, words in the reason)
    pytest.param(
        50.0,
        reading(4.0, 50.0),
        15.0,
        50,
        True,
        8.0,
        "8.0% of requests for a 50%",
        id="keep-alive skew: 8 % for a 50 % weight holds",
    ),
    pytest.param(
        50.0,
        reading(20.0, 50.0),
        15.0,
        50,
        False,
        40.0,
        "within ±15",
        id="40 % for 50 % is inside 15 points",
    ),
    pytest.param(
        50.0,
        reading(17.5, 50.0),
        15.0,
        50,
        False,
        35.0,
        "within",
        id="exactly at the tolerance is inside",
    ),
    pytest.param(
        25.0,
        reading(30.0, 50.0),
        15.0,
        50,
        True,
        60.0,
        "pinned to canary",
        id="too much share is off as well, with its own hint",
    ),
    pytest.param(
        25.0,
        reading(None, 50.0),
        15.0,
        50,
        True,
        0.0,
        "0.0% of requests",
        id="canary without any series has had no request: 0 %",
    ),
    pytest.param(
        25.0,
        reading(0.0, 0.0),
        15.0,
        50,
        False,
        None,
        "no requests",
        id="no traffic at all says nothing about the split",
    ),
    pytest.param(
        25.0,
        reading(None, None),
        15.0,
        50,
        False,
        None,
        "unknown",
        id="no data is not measured, never a hold by itself",
    ),
    pytest.param(
        25.0,
        reading(1.0, 50.0, requests=20),
        15.0,
        50,
        False,
        None,
        "20 requests",
        id="below minRequests the share is not judged",
    ),
    pytest.param(
        25.0,
        ShareReading(Sample(1.0), Sample(None, error="timeout")),
        15.0,
        50,
        False,
        None,
        "service query failed: timeout",
        id="a failed query is unknown",
    ),
    pytest.param(25.0, None, 15.0, 50, False, None, "no reading", id="no reading yet"),
]


@pytest.mark.parametrize(
    ("desired", "share", "tolerance", "min_requests", "off", "observed", "words"), CASES
)
def test_check_share(
    desired: float,
    share: ShareReading | None,
    tolerance: float,
    min_requests: int,
    off: bool,
    observed: float | None,
    words: str,
) -> None:
    check = check_share(desired, share, tolerance, min_requests)
    assert check.off is off
    assert check.observed == observed
    assert words in check.reason


@given(
    desired=st.floats(0, 100),
    canary=st.floats(0, 1e6),
    rest=st.floats(0, 1e6),
    tolerance=st.floats(0.1, 100),
)
def test_off_exactly_when_the_share_strays_past_the_tolerance(
    desired: float, canary: float, rest: float, tolerance: float
) -> None:
    total = canary + rest
    check = check_share(desired, reading(canary, total), tolerance, 0)
    if total <= 0:
        assert check.observed is None and not check.off
        return
    assert check.observed is not None and 0.0 <= check.observed <= 100.0
    share = 100.0 * canary / total
    assert check.off is (abs(round(share, 2) - desired) > tolerance)


# ---------------------------------------------------------------------------------------------
# decide(), stepped through time


def spec_with_share(**analysis: Any) -> Any:
    base = make_spec().analysis.model_dump(by_alias=True, mode="json")
    return make_spec(analysis={**base, "trafficShare": {"tolerance": 10}, **analysis})


def test_a_skewed_step_holds_with_the_observed_share_then_pauses_after_max_hold() -> None:
    driver = Driver(spec_with_share())
    driver.share = reading(2.0, 100.0)  # 2 % of requests while a quarter of the pods are canary
    decisions = driver.run(Phase.HOLDING)
    held = decisions[-1]
    assert held.state.step == 0 and held.state.holding is not None
    assert held.state.holding.kind is HoldKind.TRAFFIC_SHARE
    assert "canary receives 2.0% of requests for a 25% weight" in held.reason
    hold_record = next(r for r in held.state.history if r.decision == "hold")
    assert hold_record.weight_observed == 2.0
    assert driver.cluster.canary_spec == 1  # nothing moved on
    # Holding is a returned time (maxHold), not a poll.
    assert isinstance(held.action, Wait) and held.action.until == (
        held.state.holding.since + timedelta(minutes=5)  # type: ignore[union-attr]
    )
    driver.now = held.action.until  # type: ignore[assignment]
    paused = driver.step()
    assert paused.state.phase is Phase.PAUSED
    assert "maxHold" in paused.reason and "2.0% of requests" in paused.reason


def test_a_share_back_in_tolerance_lets_the_step_pass() -> None:
    driver = Driver(spec_with_share())
    driver.share = reading(2.0, 100.0)
    driver.run(Phase.HOLDING)
    driver.now += timedelta(minutes=1)
    driver.share = reading(24.0, 100.0)  # clients reconnected
    d = driver.step()
    assert d.state.phase is Phase.PROGRESSING and d.state.step == 1
    assert d.state.history[-1].decision == "advance"
    assert d.state.history[-1].weight_observed == 24.0


def test_only_a_share_measured_after_the_hold_counts() -> None:
    driver = Driver(spec_with_share())
    driver.share = replace(reading(2.0, 100.0), at=T0)  # measured before the step was reached
    decisions = driver.run(Phase.COMPLETED)
    waiting = [d for d in decisions if "traffic share measured" in d.reason]
    assert len(waiting) == 3  # once per step
    assert all(isinstance(d.action, Wait) and d.action.fresh_after for d in waiting)
    # None came within an interval: the share is not judged, the metrics still are.
    assert all(
        d.state.holding is None or d.state.holding.kind is not HoldKind.TRAFFIC_SHARE
        for d in decisions
    )


def test_rollback_policy_applies_to_a_persistent_skew() -> None:
    driver = Driver(spec_with_share(onInconclusive="rollback"))
    driver.share = reading(0.0, 100.0)
    held = driver.run(Phase.HOLDING)[-1]
    driver.now = held.action.until  # type: ignore[union-attr,assignment]
    d = driver.step()
    assert d.state.phase is Phase.ROLLING_BACK and "0.0% of requests" in d.reason


def test_without_traffic_share_configured_a_skew_is_not_judged() -> None:
    driver = Driver(make_spec())
    driver.share = reading(2.0, 100.0)
    decisions = driver.run(Phase.COMPLETED)
    assert all(
        d.state.holding is None or d.state.holding.kind is not HoldKind.TRAFFIC_SHARE
        for d in decisions
    )


def test_a_failing_metric_still_rolls_back_while_the_share_is_off() -> None:
    driver = Driver(spec_with_share())
    driver.share = reading(2.0, 100.0)
    driver.run(Phase.HOLDING)
    driver.verdict = Verdict.FAIL
    d = driver.step()
    assert d.state.phase is Phase.ROLLING_BACK


# ---------------------------------------------------------------------------------------------
# The record


def test_decision_record_keeps_the_observed_share_and_old_records_still_read() -> None:
    driver = Driver(spec_with_share())
    driver.share = reading(2.0, 100.0)
    record = next(r for r in driver.run(Phase.HOLDING)[-1].state.history if r.decision == "hold")
    raw = record_json(record)
    assert raw["weight_observed"] == 2.0
    assert decode_record(raw, "history[0]") == record
    del raw["weight_observed"]
    assert decode_record(raw, "history[0]").weight_observed is None
    unmeasured = record_json(decode_record(raw, "history[0]"))
    assert "weight_observed" not in unmeasured


# ---------------------------------------------------------------------------------------------
# What people see: the status document, its table, /metrics


def _status(state: Any, observed_share: float | None) -> dict[str, Any]:
    return status_document(
        name="zai-proxy",
        namespace="devpod",
        service="zai-proxy",
        stable="zai-proxy",
        canary="zai-proxy-v2",
        steps=3,
        state=state,
        replicas=None,
        endpoints={"canary": 1, "stable": 3},
        selector={"app": "zai-proxy"},
        analysis=None,
        waiting=None,
        problem=None,
        now=T0,
        observed_share=observed_share,
    )


def test_status_shows_desired_actual_and_observed_weight() -> None:
    driver = Driver(spec_with_share())
    driver.share = reading(2.0, 100.0)
    state = driver.run(Phase.HOLDING)[-1].state
    live = _status(state, 3.456)
    assert live["weight"] == {"desired": 25.0, "actual": 25.0, "observed": 3.46}
    # Read from the annotation alone (no controller): the latest decision's reading.
    stored = _status(state, None)
    assert stored["weight"]["observed"] == 2.0
    assert stored["decisions"][-1]["weightObserved"] == 2.0
    assert "requests 2%" in render_text([stored], T0)
    # Without a trafficShare nothing is claimed.
    assert _status(None, None)["weight"]["observed"] is None


def test_metrics_gauge_follows_the_reading_and_goes_away_without_one() -> None:
    metrics = Metrics()
    metrics.set_weight_observed("devpod", "zai-proxy", None)  # nothing yet: no series, no error
    metrics.set_weight_observed("devpod", "zai-proxy", 8.0)
    text = metrics.render().decode()
    assert 'ptc_rollout_weight_observed_percent{namespace="devpod",rollout="zai-proxy"} 8.0' in text
    metrics.set_weight_observed("devpod", "zai-proxy", None)
    assert "ptc_rollout_weight_observed_percent{" not in metrics.render().decode()


def test_a_hold_that_comes_to_wait_on_something_else_is_recorded_again_from_its_start() -> None:
    """One hold, one start: when what it waits on changes, the state and an Event say so, and
    maxHold still counts from when the step first held."""
    driver = Driver(spec_with_share())
    driver.share = reading(25.0, 100.0)  # the share is right: the metrics hold the step
    driver.verdict = Verdict.INCONCLUSIVE
    first = driver.run(Phase.HOLDING)[-1]
    assert first.state.holding is not None and first.state.holding.kind is HoldKind.ANALYSIS
    since = first.state.holding.since
    driver.now += timedelta(seconds=30)
    driver.share = reading(2.0, 100.0)  # now the share is off too, and it is judged first
    again = driver.step()
    assert again.event is not None and again.event.kind.decision == "hold"
    assert again.state.holding == Holding(since, HoldKind.TRAFFIC_SHARE)
    assert driver.step().event is None  # and only once: then it waits
