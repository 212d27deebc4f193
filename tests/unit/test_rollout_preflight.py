"""The preflight phase of the state machine: wait vs fail, its timeout, and a free retry."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from controller.core.analysis.evaluate import AnalysisSummary, MetricResult, Verdict
from controller.core.rollout import (
    Command,
    CommandKind,
    Decision,
    Observed,
    Persist,
    PreflightResult,
    RunPreflight,
    Wait,
    decide,
)
from controller.core.state import End, Phase, RolloutState
from tests.unit.rollout_model import T0, Cluster, Driver, make_spec
from tests.unit.states import state as make_state

SECOND = timedelta(seconds=1)


def with_preflight(result: PreflightResult | None, cluster: Cluster | None = None) -> Observed:
    obs = (cluster or Cluster()).observed(T0)
    return Observed(obs.stable, obs.canary, obs.selector, obs.endpoints, preflight=result)


def retry(n: int = 1, by: str = "alice") -> Command:
    return Command(CommandKind.RETRY, f"retry-{n}", by)


class PreflightShell:
    """Plays the reconciler for the preflight: runs it when asked, sleeps until a Wait ends.

    `answer(now)` is what the checks find at `now`: (problems, waiting).
    """

    def __init__(self, spec: Any, answer: Any) -> None:
        self.spec = spec
        self.answer = answer
        self.now = T0
        self.state: RolloutState | None = None
        self.result: PreflightResult | None = None
        self.runs: list[datetime] = []
        self.decisions: list[Decision] = []

    def step(self, command: Command | None = None) -> Decision:
        d = decide(self.spec, self.state, with_preflight(self.result), None, self.now, command)
        self.decisions.append(d)
        self.state = d.state
        if isinstance(d.action, RunPreflight):
            problems, waiting = self.answer(self.now)
            self.result = PreflightResult(self.now, tuple(problems), tuple(waiting))
            self.runs.append(self.now)
        elif isinstance(d.action, Wait):
            assert d.action.until is not None, d.reason  # preflight never waits unbounded
            assert d.action.until > self.now, d.reason
            self.now = d.action.until
        return d

    def run_until(self, phase: Phase, limit: int = 200) -> Decision:
        for _ in range(limit):
            d = self.step()
            if d.state.phase is phase:
                return d
        raise AssertionError(f"no {phase} in {limit} steps; last: {self.decisions[-1].reason}")


# ---------------------------------------------------------------------------------------------
# Wait vs fail


def test_a_wait_is_recorded_once_then_preflight_runs_again_every_10s() -> None:
    shell = PreflightShell(make_spec(), lambda now: ((), ("canary zai-proxy-v2: 0/1 pods Ready",)))
    shell.step()  # started
    shell.step()  # first run
    recorded = shell.step()
    assert isinstance(recorded.action, Persist)
    assert recorded.state.phase is Phase.PREFLIGHT
    assert recorded.state.message == "preflight waiting: canary zai-proxy-v2: 0/1 pods Ready"
    assert recorded.event is not None and recorded.event.reason == "PreflightWaiting"
    waited = shell.step()
    assert isinstance(waited.action, Wait) and waited.action.until == T0 + 10 * SECOND
    assert "0/1 pods Ready" in waited.reason  # the reconciler's "waiting on"
    shell.step()  # runs again at +10s
    shell.step()  # same reason: nothing written, just the next wait
    assert shell.runs == [T0, T0 + 10 * SECOND]
    assert [d.event.reason for d in shell.decisions if d.event] == [
        "RolloutStarted",
        "PreflightWaiting",
    ]


def test_a_wait_that_clears_passes_the_preflight() -> None:
    shell = PreflightShell(
        make_spec(),
        lambda now: ((), ("canary not Ready",) if now < T0 + 25 * SECOND else ()),
    )
    passed = shell.run_until(Phase.PROGRESSING)
    assert passed.event is not None and passed.event.reason == "PreflightPassed"
    assert shell.runs == [T0, T0 + 10 * SECOND, T0 + 20 * SECOND, T0 + 30 * SECOND]


def test_waiting_past_the_timeout_fails_with_the_last_reason() -> None:
    spec = make_spec(preflight={"timeout": "1m"})

    def answer(now: datetime) -> tuple[tuple[str, ...], tuple[str, ...]]:
        return (), (f"pod v2-a: /health answered 503 (run at +{(now - T0).seconds}s)",)

    shell = PreflightShell(spec, answer)
    failed = shell.run_until(Phase.FAILED)
    # Checked every 10 s; the last run is at the deadline itself, then it fails.
    assert shell.runs == [T0 + i * 10 * SECOND for i in range(7)]
    assert failed.state.end == End(T0 + timedelta(minutes=1), failed_in=Phase.PREFLIGHT)
    assert "preflight still waiting after 1m (preflight.timeout)" in failed.reason
    assert "(run at +60s)" in failed.reason  # the last reason, not the first
    assert "`ptc retry` starts again at once" in failed.state.message
    assert failed.event is not None and failed.event.reason == "PreflightFailed"


def test_a_pod_ready_at_the_deadline_still_passes() -> None:
    spec = make_spec(preflight={"timeout": "55s"})
    shell = PreflightShell(
        spec, lambda now: ((), ("canary not Ready",) if now < T0 + 55 * SECOND else ())
    )
    shell.run_until(Phase.PROGRESSING)
    assert shell.runs[-2:] == [T0 + 50 * SECOND, T0 + 55 * SECOND]


def test_the_timeout_counts_from_the_start_of_the_preflight_across_restarts() -> None:
    spec = make_spec(preflight={"timeout": "1m"})
    shell = PreflightShell(spec, lambda now: ((), ("canary not Ready",)))
    shell.step()
    shell.step()
    shell.step()  # the wait is recorded in the state
    # A restarted controller has no preflight result; the state's phase_since still counts.
    shell.result = None
    shell.now = T0 + timedelta(minutes=3)
    rerun = shell.step()
    assert isinstance(rerun.action, RunPreflight)
    failed = shell.step()
    assert failed.state.phase is Phase.FAILED and "after 1m" in failed.reason


def test_a_problem_fails_at_once_and_is_marked_as_a_preflight_failure() -> None:
    shell = PreflightShell(make_spec(), lambda now: (("pods outside ... debug-shell",), ()))
    failed = shell.run_until(Phase.FAILED)
    assert shell.runs == [T0] and failed.state.end == End(T0, failed_in=Phase.PREFLIGHT)


def test_a_vanished_stable_during_preflight_is_a_preflight_failure() -> None:
    cluster = Cluster(stable_exists=False, stable_spec=0, stable_ready=0)
    spec = make_spec()
    started = decide(spec, None, with_preflight(None), None, T0)
    failed = decide(spec, started.state, with_preflight(None, cluster), None, T0)
    assert failed.state.phase is Phase.FAILED and failed.state.end == End(T0, Phase.PREFLIGHT)


# ---------------------------------------------------------------------------------------------
# Retry


def test_retry_after_a_preflight_failure_applies_at_once_and_keeps_the_attempt() -> None:
    spec = make_spec(rollback={"cooldown": "10m", "maxAttempts": 3})
    failing = True
    shell = PreflightShell(spec, lambda now: (("canary pod has no port",) if failing else (), ()))
    failed = shell.run_until(Phase.FAILED)
    assert failed.state.attempt == 1
    failing = False
    shell.now += SECOND  # "at once": well inside the 10m cooldown
    retried = shell.step(retry())
    assert retried.state.phase is Phase.PREFLIGHT
    assert retried.state.attempt == 1
    assert retried.state.end is None
    assert retried.state.last_command == "retry-1"
    record = retried.state.history[-2]
    assert record.decision == "retried" and record.by == "alice"
    assert "no cooldown, no attempt used" in record.reason
    shell.run_until(Phase.PROGRESSING)
    assert shell.state is not None and shell.state.attempt == 1


def test_a_free_retry_is_allowed_even_on_the_last_attempt() -> None:
    spec = make_spec(rollback={"cooldown": "10m", "maxAttempts": 2})
    state = make_state(
        Phase.FAILED,
        decide(spec, None, with_preflight(None), None, T0).state.revision,
        attempt=2,
        end=End(T0, failed_in=Phase.PREFLIGHT),
    )
    d = decide(spec, state, with_preflight(None), None, T0 + SECOND, retry())
    assert d.state.phase is Phase.PREFLIGHT and d.state.attempt == 2


def test_retry_after_a_failure_of_unknown_kind_still_obeys_cooldown_and_attempts() -> None:
    # A state from an older ptc carries no failedIn: treated like any failure.
    spec = make_spec(rollback={"cooldown": "10m", "maxAttempts": 3})
    target = decide(spec, None, with_preflight(None), None, T0).state.revision
    state = make_state(Phase.FAILED, target, attempt=1, end=End(T0))
    early = decide(spec, state, with_preflight(None), None, T0 + SECOND, retry())
    assert early.state.phase is Phase.FAILED and "cooldown has 599s left" in early.reason
    later = decide(spec, state, with_preflight(None), None, T0 + timedelta(minutes=10), retry(2))
    assert later.state.phase is Phase.PREFLIGHT and later.state.attempt == 2


def test_retry_after_a_real_rollback_still_obeys_cooldown_and_counts_the_attempt() -> None:
    spec = make_spec(rollback={"cooldown": "10m", "maxAttempts": 2})
    driver = Driver(spec)
    driver.run(Phase.PROGRESSING, first=True)
    driver.verdict = None
    bad = AnalysisSummary(
        driver.now, Verdict.FAIL, (MetricResult("bad-gateway", Verdict.FAIL, 0.2, None, "", ""),)
    )
    d = decide(spec, driver.state, driver.cluster.observed(driver.now), bad, driver.now)
    assert d.state.phase is Phase.ROLLING_BACK
    driver.state = d.state
    driver.run(Phase.ROLLED_BACK)
    assert driver.state is not None and driver.state.end is not None
    assert driver.state.end.failed_in is None
    early = driver.step(retry(1))
    assert early.state.phase is Phase.ROLLED_BACK and "cooldown" in early.reason
    driver.now += timedelta(minutes=10)
    again = driver.step(retry(2))
    assert again.state.phase is Phase.PREFLIGHT and again.state.attempt == 2


def test_auto_retry_does_not_restart_a_preflight_failure() -> None:
    spec = make_spec(rollback={"cooldown": "1s", "autoRetry": True})
    shell = PreflightShell(spec, lambda now: (("labels wrong",), ()))
    failed = shell.run_until(Phase.FAILED)
    later = T0 + timedelta(minutes=5)
    d = decide(spec, failed.state, with_preflight(None), None, later)
    assert d.state.phase is Phase.FAILED and d.action == Wait(None)
