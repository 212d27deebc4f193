"""Issue 18 #5: a step (and the bake) passes only on an analysis evaluated at or after its end.

decide() is driven with stepped time and summaries stamped at chosen instants; the shell's part
(asking the runner for an evaluation at once) is `Wait.fresh_after`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from controller.core.analysis.evaluate import AnalysisSummary, Verdict
from controller.core.rollout import Decision, Wait, decide
from controller.core.rollout.holds import VERDICT_GRACE
from controller.core.state import Phase
from tests.unit.rollout_model import Driver, make_spec

INTERVAL = timedelta(seconds=10)  # make_spec's analysis interval
HOLD = timedelta(minutes=1)
BAKE = timedelta(minutes=2)


def reached(driver: Driver) -> datetime:
    """Run until step 1's split is reached and its hold is running; its hold end."""
    while driver.state is None or driver.state.hold is None:
        d = driver.step()
        if isinstance(d.action, Wait):
            driver.cluster.ready_up(9, 9)
            driver.now += timedelta(seconds=1)
    assert driver.state is not None and driver.state.hold is not None
    return driver.state.hold.reached_at + HOLD


def decide_with(driver: Driver, verdict: Verdict, at: datetime) -> Decision:
    """One decide() at the driver's now with a summary evaluated at `at`; applied."""
    summary = AnalysisSummary(at, verdict)
    d = decide(driver.spec, driver.state, driver.cluster.observed(driver.now), summary, driver.now)
    driver.state = d.state
    return d


def test_a_pass_from_before_the_hold_end_waits_for_a_fresh_evaluation() -> None:
    driver = Driver(make_spec())
    end = reached(driver)
    # Issue 18 #5: the fault began 22 s before the hold ended; the last verdict was taken 1 s
    # after it began and still passed.
    driver.now = end
    d = decide_with(driver, Verdict.PASS, end - timedelta(seconds=21))
    assert d.action == Wait(end + INTERVAL, fresh_after=end)
    assert d.state.step == 0 and d.state.phase is Phase.PROGRESSING
    assert d.state.holding is None and d.event is None  # a wait, not a recorded hold
    assert "hold over; waiting for the analysis evaluated at its end" in d.reason
    # The evaluation taken at the hold's end judges the fault: no advance.
    driver.now = end + timedelta(milliseconds=300)
    held = decide_with(driver, Verdict.INCONCLUSIVE, end)
    assert held.state.phase is Phase.HOLDING and held.state.step == 0
    assert "step 1: analysis inconclusive" in held.reason
    # Once a later evaluation passes, the step advances on it.
    driver.now = end + timedelta(seconds=40)
    advanced = decide_with(driver, Verdict.PASS, end + timedelta(seconds=40))
    assert advanced.state.step == 1 and advanced.event is not None
    assert advanced.event.reason == "StepAdvanced"


def test_a_fresh_pass_at_the_hold_end_advances_at_once() -> None:
    driver = Driver(make_spec())
    end = reached(driver)
    driver.now = end + timedelta(milliseconds=50)
    d = decide_with(driver, Verdict.PASS, end)  # evaluated exactly at the end: counts
    assert d.state.step == 1 and d.state.holding is None


def test_without_a_fresh_evaluation_within_an_interval_the_step_holds() -> None:
    driver = Driver(make_spec())
    end = reached(driver)
    stale = end - timedelta(seconds=5)
    driver.now = end + INTERVAL - timedelta(milliseconds=1)
    assert isinstance(decide_with(driver, Verdict.PASS, stale).action, Wait)
    assert driver.state is not None and driver.state.phase is Phase.PROGRESSING
    driver.now = end + INTERVAL
    held = decide_with(driver, Verdict.PASS, stale)
    assert held.state.phase is Phase.HOLDING
    assert "analysis pending: no analysis result since the hold ended" in held.reason
    # ... and maxHold (5 m) applies from there as to any missing verdict.
    driver.now = end + INTERVAL + timedelta(minutes=5)
    assert decide_with(driver, Verdict.PASS, stale).state.phase is Phase.PAUSED


def test_the_bake_passes_only_on_an_evaluation_after_its_end() -> None:
    driver = Driver(make_spec())
    driver.run(Phase.BAKING)  # waiting, bake started
    bake = driver.state.bake if driver.state is not None else None
    assert bake is not None and bake.started_at is not None
    end = bake.started_at + BAKE
    driver.now = end
    d = decide_with(driver, Verdict.PASS, end - timedelta(seconds=3))
    assert d.action == Wait(end + INTERVAL, fresh_after=end)
    assert d.state.phase is Phase.BAKING
    assert d.reason == "bake: bake over; waiting for the analysis evaluated at its end"
    driver.now = end + timedelta(seconds=1)
    passed = decide_with(driver, Verdict.PASS, end + timedelta(seconds=1))
    assert passed.state.phase is Phase.SCALING_DOWN


class LaggingDriver(Driver):
    """Summaries evaluated `lags[i]` seconds before the i-th decision (cycling)."""

    lags: tuple[int, ...] = (0,)
    used: list[AnalysisSummary | None]

    def summary(self) -> AnalysisSummary | None:
        lag = self.lags[len(self.decisions) % len(self.lags)]
        s = AnalysisSummary(self.now - timedelta(seconds=lag), Verdict.PASS)
        self.used.append(s)
        return s


@settings(max_examples=60, deadline=None)
# lags within interval + grace: older passes never advance (the next tests), so the run would
# pause at maxHold instead of completing
@given(lags=st.lists(st.integers(0, 15), min_size=1, max_size=8))
def test_no_step_or_bake_ever_passes_on_a_verdict_from_before_its_end(lags: list[int]) -> None:
    driver = LaggingDriver(make_spec())
    driver.lags = tuple(lags)
    driver.used = []
    driver.run(Phase.COMPLETED, limit=2000)
    ends: dict[int, datetime] = {}
    for d, summary in zip(driver.decisions, driver.used, strict=True):
        s = d.state
        if s.hold is not None:
            ends[s.step] = s.hold.reached_at + HOLD
        if s.bake is not None and s.bake.started_at is not None:
            ends[s.step] = s.bake.started_at + BAKE
        passed = d.event is not None and d.event.reason in ("StepAdvanced", "FlipStarted")
        baked = d.event is not None and d.event.reason == "BakePassed"
        if passed or baked:
            assert summary is not None
            end = ends[s.step - 1] if passed else ends[s.step]
            assert summary.at >= end, (d.reason, summary.at, end)


# -- issue 14 item 3: no verdict older than its interval (plus a grace) advances -------------


def test_a_pass_older_than_its_interval_holds_the_step_until_a_fresh_one() -> None:
    driver = Driver(make_spec())
    end = reached(driver)
    # the pass was taken right at the hold's end, but this reconcile runs 40 s later (the
    # controller is behind): the canary may have been failing for 39 s
    driver.now = end + timedelta(seconds=40)
    held = decide_with(driver, Verdict.PASS, end)
    assert held.state.phase is Phase.HOLDING and held.state.step == 0
    assert "the latest analysis is 40s old, more than its interval (10s) + 5s" in held.reason
    assert "not used to advance" in held.reason
    # still only that verdict: the hold goes on (a wait, no new record)
    driver.now += timedelta(seconds=5)
    waiting = decide_with(driver, Verdict.PASS, end)
    assert isinstance(waiting.action, Wait) and waiting.state.step == 0
    # a fresh pass advances
    driver.now += timedelta(seconds=1)
    advanced = decide_with(driver, Verdict.PASS, driver.now - timedelta(seconds=1))
    assert advanced.state.step == 1


def test_a_pass_just_within_interval_and_grace_still_advances() -> None:
    driver = Driver(make_spec())
    end = reached(driver)
    driver.now = end + INTERVAL + VERDICT_GRACE
    assert decide_with(driver, Verdict.PASS, end).state.step == 1


def test_a_stale_pass_does_not_end_the_bake() -> None:
    driver = Driver(make_spec())
    driver.run(Phase.BAKING)
    bake = driver.state.bake if driver.state is not None else None
    assert bake is not None and bake.started_at is not None
    end = bake.started_at + BAKE
    driver.now = end + timedelta(minutes=1)
    d = decide_with(driver, Verdict.PASS, end + timedelta(seconds=1))
    assert d.state.phase is Phase.BAKING and "not used to advance" in d.reason


def test_a_stale_fail_still_rolls_back() -> None:
    driver = Driver(make_spec())
    end = reached(driver)
    driver.now = end + timedelta(minutes=3)
    failed = decide_with(driver, Verdict.FAIL, end - timedelta(seconds=30))
    assert failed.state.phase is Phase.ROLLING_BACK


@settings(max_examples=60, deadline=None)
@given(lags=st.lists(st.integers(0, 120), min_size=1, max_size=8))
def test_no_step_or_bake_ever_passes_on_a_verdict_older_than_interval_and_grace(
    lags: list[int],
) -> None:
    driver = LaggingDriver(make_spec())
    driver.lags = tuple(lags)
    driver.used = []
    # lags past the grace may keep it from ever completing (it pauses at maxHold): walk a
    # bounded number of decisions instead of running to an end
    for _ in range(400):
        d = driver.step()
        if d.state.phase in (Phase.COMPLETED, Phase.PAUSED):
            break
        if isinstance(d.action, Wait):
            driver.cluster.ready_up(99, 99)
            driver.now = d.action.until if d.action.until else driver.now + timedelta(seconds=5)
    for d, summary in zip(driver.decisions, driver.used, strict=True):
        if d.event is not None and d.event.reason in ("StepAdvanced", "FlipStarted", "BakePassed"):
            assert summary is not None
            age = d.state.history[-1].at - summary.at
            assert age <= INTERVAL + VERDICT_GRACE, (d.reason, age)
