"""The rollout state machine: transitions, commands, crash safety, and safety properties."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from controller.core.analysis.evaluate import AnalysisSummary, MetricResult, Verdict
from controller.core.plan import DeploymentRole
from controller.core.rollout import (
    Command,
    CommandKind,
    DeleteDeployment,
    EventType,
    Observed,
    PatchService,
    PreflightResult,
    RunPreflight,
    Scale,
    Wait,
    decide,
    target_hash,
)
from controller.core.state import Bake, Phase
from tests.unit.rollout_model import T0, Cluster, Driver, InvariantViolation, make_spec


def phases(decisions: list) -> list[Phase]:  # type: ignore[type-arg]
    out: list[Phase] = []
    for d in decisions:
        if not out or out[-1] is not d.state.phase:
            out.append(d.state.phase)
    return out


def scales(decisions: list) -> list[tuple[str, int]]:  # type: ignore[type-arg]
    return [
        (d.action.role.value, d.action.replicas) for d in decisions if isinstance(d.action, Scale)
    ]


# ---------------------------------------------------------------------------------------------
# The happy path, end to end


def test_happy_path_phases_scales_and_selector() -> None:
    driver = Driver(make_spec())
    decisions = driver.run(Phase.COMPLETED)
    assert phases(decisions) == [
        Phase.PREFLIGHT,
        Phase.PROGRESSING,
        Phase.FLIPPING,
        Phase.BAKING,
        Phase.SCALING_DOWN,
        Phase.COMPLETED,
    ]
    assert scales(decisions) == [
        ("canary", 1),
        ("stable", 3),  # step 1: 25%
        ("canary", 2),
        ("stable", 2),  # step 2: 50%
        ("canary", 3),
        ("stable", 1),  # step 3: 75%
        ("canary", 4),  # flip: canary full, one stable pod stays warm (surge 1)
        ("stable", 0),  # after the bake
    ]
    flips = [d for d in decisions if isinstance(d.action, PatchService)]
    assert [dict(d.action.selector) for d in flips] == [{"app": "zai-proxy", "version": "v2"}]
    # The flip carries the state: it is recorded in the same patch.
    assert flips[0].state.phase is Phase.BAKING and flips[0].state.bake == Bake(
        flipped_at=flips[0].state.history[-1].at
    )
    assert driver.cluster.stable_exists and driver.cluster.stable_spec == 0  # kept for retention
    reasons = [d.event.reason for d in decisions if d.event]
    assert reasons[:2] == ["RolloutStarted", "PreflightPassed"]
    assert reasons.count("StepReached") == 3 and "SelectorFlipped" in reasons
    assert reasons[-1] == "RolloutCompleted"


def test_holds_and_bake_last_their_configured_time() -> None:
    driver = Driver(make_spec())
    decisions = driver.run(Phase.COMPLETED)
    reached = [
        d.state.hold.reached_at if d.state.hold else None
        for d in decisions
        if d.event and d.event.reason == "StepReached"
    ]
    advanced = [
        d for d in decisions if d.event and d.event.reason in ("StepAdvanced", "FlipStarted")
    ]
    for start, adv in zip(reached, advanced, strict=True):
        assert start is not None
        assert adv.state.history[-1].at - start >= timedelta(minutes=1)
    bake = next(d for d in decisions if d.event and d.event.reason == "BakeStarted")
    passed = next(d for d in decisions if d.event and d.event.reason == "BakePassed")
    assert passed.state.history[-1].at - bake.state.bake.started_at >= timedelta(minutes=2)  # type: ignore[union-attr,operator]


def test_delete_stable_after_retention_when_configured() -> None:
    driver = Driver(make_spec(retention={"scaleDownDelay": "1m", "deleteStable": True}))
    decisions = driver.run(Phase.COMPLETED)
    deletes = [d for d in decisions if isinstance(d.action, DeleteDeployment)]
    assert len(deletes) == 1 and deletes[0].action.deployment == "zai-proxy"
    assert not driver.cluster.stable_exists


# ---------------------------------------------------------------------------------------------
# Preflight


def test_preflight_runs_then_fails_naming_the_problem() -> None:
    spec = make_spec()
    obs = Cluster().observed(T0)
    started = decide(spec, None, obs, None, T0)
    assert started.state.phase is Phase.PREFLIGHT
    no_result = Observed(obs.stable, obs.canary, obs.selector)
    assert isinstance(decide(spec, started.state, no_result, None, T0).action, RunPreflight)
    bad = Observed(
        obs.stable,
        obs.canary,
        obs.selector,
        preflight=PreflightResult(T0, problems=("pod other-1 matches the shared selector",)),
    )
    failed = decide(spec, started.state, bad, None, T0)
    assert failed.state.phase is Phase.FAILED
    assert "other-1" in failed.reason and failed.event and failed.event.type is EventType.WARNING


def test_preflight_takes_n_from_stable_when_unset() -> None:
    driver = Driver(make_spec(replicas=None))
    driver.cluster.stable_spec = driver.cluster.stable_ready = 2
    driver.run(Phase.PROGRESSING, first=True)
    assert driver.state is not None and driver.state.progress.replicas == 2


# ---------------------------------------------------------------------------------------------
# Analysis


def failing_summary(now):  # type: ignore[no-untyped-def]
    return AnalysisSummary(
        now,
        Verdict.FAIL,
        (MetricResult("bad-gateway", Verdict.FAIL, 0.2, None, "<= 0.05", "0.2 vs <= 0.05"),),
    )


def test_fail_mid_step_rolls_back_traffic_first() -> None:
    driver = Driver(make_spec())
    driver.run(Phase.PROGRESSING, first=True)
    # Reach step 2 (2 canary / 2 stable).
    while not (driver.state and driver.state.step == 1 and driver.state.hold):
        d = driver.step()
        if isinstance(d.action, Wait):
            driver.cluster.ready_up(9, 9)
            driver.now = d.action.until or driver.now + timedelta(seconds=5)
    driver.verdict = Verdict.FAIL
    d = decide(
        driver.spec,
        driver.state,
        driver.cluster.observed(driver.now),
        failing_summary(driver.now),
        driver.now,
    )
    assert d.state.phase is Phase.ROLLING_BACK
    assert "bad-gateway" in d.reason and "0.05" in d.reason
    assert d.event and d.event.reason == "RollbackStarted"
    driver.state = d.state
    rest = driver.run(Phase.ROLLED_BACK)
    # Stable back to N first, then canary out; no selector change needed (still shared).
    assert scales(rest) == [("stable", 4), ("canary", 0)]
    assert driver.cluster.selector == {"app": "zai-proxy"}
    assert driver.cluster.stable_ready == 4 and driver.cluster.canary_spec == 0


def test_rollback_after_flip_moves_selector_back_once_stable_is_ready() -> None:
    driver = Driver(make_spec())
    driver.run(Phase.BAKING)
    assert driver.cluster.selector["version"] == "v2"
    d = decide(
        driver.spec,
        driver.state,
        driver.cluster.observed(driver.now),
        failing_summary(driver.now),
        driver.now,
    )
    driver.state = d.state
    driver.verdict = None
    rest = driver.run(Phase.ROLLED_BACK)
    kinds = [type(x.action).__name__ for x in rest if not isinstance(x.action, Wait)]
    assert kinds.index("PatchService") < kinds.index("Scale", kinds.index("Scale") + 1)
    assert driver.cluster.selector == {"app": "zai-proxy"}
    assert driver.cluster.canary_spec == 0 and driver.cluster.stable_ready == 4


def test_rollback_pins_stable_when_it_has_a_version_label() -> None:
    spec = make_spec(
        stable={"deployment": "zai-proxy", "version": "v1"}, rollback={"canaryReplicas": 1}
    )
    driver = Driver(spec, cluster=Cluster(stable_version="v1"))
    driver.run(Phase.PROGRESSING)
    d = decide(
        spec,
        driver.state,
        driver.cluster.observed(driver.now),
        failing_summary(driver.now),
        driver.now,
    )
    driver.state = d.state
    driver.verdict = None
    driver.run(Phase.ROLLED_BACK)
    assert driver.cluster.selector == {"app": "zai-proxy", "version": "v1"}
    assert driver.cluster.canary_spec == 1  # kept for debugging, out of the Service


def test_stale_verdict_does_not_promote_and_maxhold_pauses() -> None:
    driver = Driver(make_spec())
    driver.verdict = None  # Prometheus unreachable: no analysis result at all
    decisions = driver.run(Phase.PAUSED)
    assert Phase.HOLDING in phases(decisions)
    assert driver.state is not None and driver.state.step == 0  # never promoted
    paused = decisions[-1]
    assert "maxHold" in paused.reason and "resume or promote" in paused.reason
    assert any(d.event and d.event.reason == "RolloutPaused" for d in decisions)


@pytest.mark.parametrize(
    ("policy", "phase"),
    [("rollback", Phase.ROLLED_BACK), ("pause", Phase.PAUSED)],
)
def test_on_inconclusive_policy(policy: str, phase: Phase) -> None:
    spec = make_spec(
        analysis={
            **make_spec().analysis.model_dump(by_alias=True, mode="json"),
            "onInconclusive": policy,
        }
    )
    driver = Driver(spec)
    driver.verdict = Verdict.INCONCLUSIVE
    driver.run(phase)


def test_hold_policy_keeps_holding_past_maxhold() -> None:
    base = make_spec().analysis.model_dump(by_alias=True, mode="json")
    driver = Driver(make_spec(analysis={**base, "onInconclusive": "hold"}))
    driver.verdict = Verdict.INCONCLUSIVE
    driver.run(Phase.HOLDING)
    driver.now += timedelta(hours=2)
    d = driver.step()
    assert d.state.phase is Phase.HOLDING and isinstance(d.action, Wait) and d.action.until is None
    driver.verdict = Verdict.PASS
    d = driver.step()
    assert d.state.phase is Phase.PROGRESSING and d.state.step == 1


def test_capacity_gate_holds_while_canary_is_cold_then_proceeds() -> None:
    base = make_spec().analysis.model_dump(by_alias=True, mode="json")
    gate = {
        "capacity": {"gauge": {"metric": "zai_proxy_rate_limit_requests_per_second"}},
        "demand": {"rate": {"metric": "zai_proxy_requests_total"}},
        "headroom": 1.2,
    }
    driver = Driver(make_spec(analysis={**base, "capacityGate": gate}))
    driver.capacity = 10.0  # 100 rps of demand; 50% needs 60 rps
    decisions = driver.run(Phase.HOLDING)
    assert driver.state is not None and driver.state.step == 1
    assert "capacity gate" in decisions[-1].reason and "60 rps" in decisions[-1].reason
    assert driver.cluster.canary_spec == 1  # nothing moved while cold
    driver.capacity = 70.0
    d = driver.step()
    assert d.state.phase is Phase.PROGRESSING and d.state.holding is None  # released first
    d = driver.step()
    assert (
        isinstance(d.action, Scale)
        and d.action.role is DeploymentRole.CANARY
        and d.action.replicas == 2
    )


# ---------------------------------------------------------------------------------------------
# Commands


def cmd(kind: CommandKind, n: int = 1) -> Command:
    return Command(kind, id=f"{kind.value}-{n}", by="alice")


def test_pause_resume_and_exactly_once() -> None:
    driver = Driver(make_spec())
    driver.run(Phase.PROGRESSING, first=True)
    paused = driver.step(cmd(CommandKind.PAUSE))
    assert paused.state.phase is Phase.PAUSED and paused.state.last_command == "pause-1"
    assert paused.state.history[-1].by == "alice"
    # The same command again (e.g. seen again after a restart) is not applied twice.
    again = driver.step(cmd(CommandKind.PAUSE))
    assert isinstance(again.action, Wait) and again.state == paused.state
    resumed = driver.step(cmd(CommandKind.RESUME))
    assert resumed.state.phase is Phase.PROGRESSING and resumed.state.pause is None


def test_promote_skips_the_hold_and_the_manual_gate() -> None:
    steps = [{"weight": 25, "hold": "1h", "manualGate": True}, {"weight": 50, "hold": "1m"}]
    driver = Driver(make_spec(steps=steps))
    driver.run(Phase.PROGRESSING, first=True)
    while not (driver.state and driver.state.hold):
        driver.step()
        driver.cluster.ready_up(9, 9)
    promoted = driver.step(cmd(CommandKind.PROMOTE))
    assert promoted.state.progress.promoted_step == 0
    advanced = driver.step()
    assert advanced.state.step == 1, advanced.reason
    # Step 2 has no gate; with the gate on step 1 skipped by the promote we never paused.
    assert all(x.state.phase is not Phase.PAUSED for x in driver.decisions)


def test_manual_gate_pauses_until_promoted() -> None:
    steps = [{"weight": 25, "hold": "1m", "manualGate": True}, {"weight": 50, "hold": "1m"}]
    driver = Driver(make_spec(steps=steps))
    driver.run(Phase.PAUSED)
    assert "manual gate" in driver.state.message  # type: ignore[union-attr]
    driver.step(cmd(CommandKind.PROMOTE))
    d = driver.step()
    assert d.state.step == 1 and d.state.phase is Phase.PROGRESSING


def test_abort_rolls_back_and_retry_respects_cooldown_and_attempts() -> None:
    spec = make_spec(rollback={"cooldown": "5m", "maxAttempts": 2})
    driver = Driver(spec)
    driver.run(Phase.PROGRESSING, first=True)
    aborted = driver.step(cmd(CommandKind.ABORT))
    assert aborted.state.phase is Phase.ROLLING_BACK and "aborted by alice" in aborted.reason
    driver.run(Phase.ROLLED_BACK)
    early = driver.step(cmd(CommandKind.RETRY, 1))
    assert early.state.phase is Phase.ROLLED_BACK and "cooldown" in early.reason
    driver.now += timedelta(minutes=5)
    retried = driver.step(cmd(CommandKind.RETRY, 2))
    assert retried.state.phase is Phase.PREFLIGHT and retried.state.attempt == 2
    driver.step(cmd(CommandKind.ABORT, 2))
    driver.run(Phase.ROLLED_BACK)
    driver.now += timedelta(minutes=10)
    refused = driver.step(cmd(CommandKind.RETRY, 3))
    assert refused.state.phase is Phase.ROLLED_BACK
    assert "2 of 2 attempts used" in refused.reason


def test_a_retry_is_not_rolled_back_by_the_previous_attempts_verdict() -> None:
    spec = make_spec(rollback={"cooldown": "1m", "maxAttempts": 2})
    driver = Driver(spec)
    driver.run(Phase.PROGRESSING, first=True)
    stale = failing_summary(driver.now)  # the failing verdict of attempt 1
    d = decide(spec, driver.state, driver.cluster.observed(driver.now), stale, driver.now)
    driver.state = d.state
    driver.verdict = None
    driver.run(Phase.ROLLED_BACK)
    driver.now += timedelta(minutes=2)
    driver.step(cmd(CommandKind.RETRY))
    # Attempt 2 starts; the reconciler still holds attempt 1's last (failing) summary.
    for _ in range(6):
        d = decide(spec, driver.state, driver.cluster.observed(driver.now), stale, driver.now)
        assert d.state.phase is not Phase.ROLLING_BACK, d.reason
        driver.state = d.state
        driver._apply(d)
        driver.cluster.ready_up(9, 9)
    # A fresh failing verdict of attempt 2 does roll it back.
    fresh = failing_summary(driver.now)
    d = decide(spec, driver.state, driver.cluster.observed(driver.now), fresh, driver.now)
    assert d.state.phase is Phase.ROLLING_BACK


def test_auto_retry_after_cooldown() -> None:
    spec = make_spec(rollback={"cooldown": "1m", "maxAttempts": 2, "autoRetry": True})
    driver = Driver(spec)
    driver.run(Phase.PROGRESSING, first=True)
    driver.step(cmd(CommandKind.ABORT))
    driver.run(Phase.ROLLED_BACK)
    decisions = driver.run(Phase.COMPLETED)
    assert driver.state is not None and driver.state.attempt == 2
    first, restart = decisions[0], decisions[1]
    assert isinstance(first.action, Wait) and "automatic retry" in first.reason
    assert restart.state.phase is Phase.PREFLIGHT
    assert restart.state.progress.started_at == first.action.until  # exactly after the 1m cooldown


def test_commands_that_do_not_apply_are_refused_and_recorded() -> None:
    driver = Driver(make_spec())
    driver.run(Phase.COMPLETED)
    d = driver.step(cmd(CommandKind.ABORT))
    assert d.state.phase is Phase.COMPLETED and d.event and d.event.reason == "CommandRefused"
    assert d.state.last_command == "abort-1"


# ---------------------------------------------------------------------------------------------
# Spec changes, drift, crashes


def test_a_new_target_waits_while_in_flight_and_restarts_when_done() -> None:
    driver = Driver(make_spec())
    driver.run(Phase.PROGRESSING, first=True)
    v3 = make_spec(canary={"deployment": "zai-proxy-v3", "version": "v3"})
    d = decide(v3, driver.state, driver.cluster.observed(driver.now), None, driver.now)
    assert isinstance(d.action, Wait) and "in flight" in d.reason and d.state is driver.state
    driver.run(Phase.COMPLETED)
    fresh = decide(v3, driver.state, driver.cluster.observed(driver.now), None, driver.now)
    assert fresh.state.phase is Phase.PREFLIGHT and fresh.state.revision == target_hash(v3)


def test_a_command_applied_before_a_new_rollout_is_not_applied_again() -> None:
    driver = Driver(make_spec())
    driver.run(Phase.PROGRESSING, first=True)
    driver.step(cmd(CommandKind.ABORT))
    driver.run(Phase.ROLLED_BACK)
    v3 = make_spec(canary={"deployment": "zai-proxy-v3", "version": "v3"})
    driver.spec = v3
    started = driver.step(cmd(CommandKind.ABORT))  # the annotation still holds abort-1
    assert started.state.phase is Phase.PREFLIGHT and started.state.last_command == "abort-1"
    assert started.state.identity.rollout == "zai-proxy"
    d = driver.step(cmd(CommandKind.ABORT))
    assert d.state.phase is not Phase.ROLLING_BACK


def test_threshold_change_is_not_a_new_rollout() -> None:
    assert target_hash(make_spec()) == target_hash(make_spec(maxSurge=2))


def test_drift_is_restored_during_a_hold() -> None:
    driver = Driver(make_spec())
    while not (driver.state and driver.state.hold):
        driver.step()
        driver.cluster.ready_up(9, 9)
    driver.cluster.stable_spec = driver.cluster.stable_ready = 4  # someone scaled v1 by hand
    d = driver.step()
    assert isinstance(d.action, Scale) and (d.action.role, d.action.replicas) == (
        DeploymentRole.STABLE,
        3,
    )


def test_missing_canary_rolls_back_missing_stable_fails() -> None:
    driver = Driver(make_spec())
    driver.run(Phase.PROGRESSING, first=True)
    driver.cluster.canary_exists = False
    assert driver.step().state.phase is Phase.ROLLING_BACK
    other = Driver(make_spec())
    other.run(Phase.PROGRESSING, first=True)
    other.cluster.stable_exists = False
    d = other.step()
    assert d.state.phase is Phase.FAILED and "nothing to roll back to" in d.reason


@pytest.mark.parametrize("crash_at", range(0, 40, 3))
def test_losing_a_state_write_repeats_nothing_irreversible(crash_at: int) -> None:
    """A crash between an action and its state write: the run still completes the same way."""
    reference = Driver(make_spec())
    expected = scales(reference.run(Phase.COMPLETED))
    driver = Driver(make_spec())
    for _ in range(crash_at):
        d = driver.step()
        if isinstance(d.action, Wait):
            driver.cluster.ready_up(9, 9)
            driver.now = d.action.until or driver.now + timedelta(seconds=5)
    driver.lose_next_persist = True
    driver.run(Phase.COMPLETED)
    got = scales(driver.decisions)
    # Scale actions set absolute counts: a repeat may happen, but never a different count.
    dedup = [s for i, s in enumerate(got) if i == 0 or got[i - 1] != s]
    assert dedup == expected
    steps_reached = [
        d.state.step for d in driver.decisions if d.event and d.event.reason == "StepReached"
    ]
    assert sorted(set(steps_reached)) == [0, 1, 2]


# ---------------------------------------------------------------------------------------------
# Property: random observations, verdicts and commands never break the safety invariants


class RolloutMachine(RuleBasedStateMachine):
    """Random specs, pod readiness, pod failures, verdicts, commands, time and lost writes."""

    @initialize(
        replicas=st.integers(1, 5),
        surge_unavailable=st.sampled_from([(1, 0), (2, 0), (0, 1), (1, 1), (0, 2)]),
        last_step_full=st.booleans(),
        stable_version=st.sampled_from([None, "v1"]),
        gate=st.booleans(),
        shifting=st.sampled_from(["standard", "surge"]),
    )
    def setup(
        self,
        replicas: int,
        surge_unavailable: tuple[int, int],
        last_step_full: bool,
        stable_version: str | None,
        gate: bool,
        shifting: str,
    ) -> None:
        surge: int | str
        surge, unavailable = surge_unavailable
        if replicas == 1 and surge == 0:
            surge = 1  # N=1 without surge has no split with both versions (validation refuses)
        if shifting == "surge":
            surge = "100%"  # the flip needs the full canary beside all N stable pods
        steps = [{"weight": 30, "hold": "1m"}, {"weight": 60, "hold": "1m"}]
        if last_step_full:
            steps.append({"weight": 100, "hold": "1m"})
        analysis = make_spec().analysis.model_dump(by_alias=True, mode="json")
        if gate:
            analysis["capacityGate"] = {
                "capacity": {"gauge": {"metric": "limit"}},
                "demand": {"rate": {"metric": "requests"}},
            }
        stable: dict[str, str] = {"deployment": "zai-proxy"}
        if stable_version:
            stable["version"] = stable_version
        spec = make_spec(
            replicas=replicas,
            maxSurge=surge,
            maxUnavailable=unavailable,
            steps=steps,
            analysis=analysis,
            stable=stable,
            shifting=shifting,
        )
        cluster = Cluster(
            stable_spec=replicas, stable_ready=replicas, stable_version=stable_version
        )
        self.driver = Driver(spec, cluster=cluster)
        self.commands = 0

    @rule(canary=st.integers(0, 2), stable=st.integers(0, 2))
    def pods_fail(self, canary: int, stable: int) -> None:
        """Pods crash (not our doing); they come back Ready later via pods_become_ready."""
        c = self.driver.cluster
        c.canary_ready = max(0, c.canary_ready - canary)
        c.stable_ready = max(0, c.stable_ready - stable)

    @rule(verdict=st.sampled_from([*Verdict, None]))
    def set_verdict(self, verdict: Verdict | None) -> None:
        self.driver.verdict = verdict

    @rule(canary=st.integers(0, 3), stable=st.integers(0, 3))
    def pods_become_ready(self, canary: int, stable: int) -> None:
        self.driver.cluster.ready_up(canary, stable)

    @rule(seconds=st.integers(1, 900))
    def time_passes(self, seconds: int) -> None:
        self.driver.now += timedelta(seconds=seconds)

    @rule(capacity=st.sampled_from([None, 0.0, 50.0, 500.0]))
    def capacity_changes(self, capacity: float | None) -> None:
        self.driver.capacity = capacity

    @rule(kind=st.sampled_from(list(CommandKind)))
    def command(self, kind: CommandKind) -> None:
        self.commands += 1
        self.driver.step(Command(kind, id=f"c{self.commands}", by="prop"))

    @rule(n=st.integers(1, 6))
    def controller_acts(self, n: int) -> None:
        for _ in range(n):
            d = self.driver.step()
            if isinstance(d.action, Wait):
                break

    @rule(n=st.integers(5, 40))
    def controller_runs_ahead(self, n: int) -> None:
        """Pods turn Ready and time reaches each wait's end: the deep phases get explored."""
        for _ in range(n):
            d = self.driver.step()
            if isinstance(d.action, Wait):
                self.driver.cluster.ready_up(99, 99)
                if d.action.until is not None:
                    self.driver.now = max(self.driver.now, d.action.until)

    @precondition(lambda self: self.driver.state is not None)
    @rule()
    def crash_loses_a_write(self) -> None:
        self.driver.lose_next_persist = True

    @invariant()
    def state_is_consistent(self) -> None:
        s = self.driver.state
        if s is None:
            return
        assert 0 <= s.step <= len(self.driver.spec.steps)
        if s.phase is Phase.PAUSED:
            assert s.pause is not None
        if s.phase in (Phase.FLIPPING,):
            assert s.step == len(self.driver.spec.steps)
        if self.driver.spec.shifting == "surge":
            # Surge mode never scales away a pod the Service routes to, except to roll back.
            forward = [
                (phase, n)
                for phase, n in self.driver.serving_stopped
                if phase not in (Phase.ROLLING_BACK, Phase.ROLLED_BACK)
            ]
            assert forward == [], forward


RolloutMachine.TestCase.settings = settings(
    max_examples=200,
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestRolloutProperties = RolloutMachine.TestCase


def test_invariant_checker_catches_a_bad_action() -> None:
    """The model's checker would fail a decide() that emptied the Service (it can fail)."""
    from controller.core.rollout import Decision

    driver = Driver(make_spec())
    driver.run(Phase.PROGRESSING, first=True)
    assert driver.state is not None
    bad = Decision(Scale(DeploymentRole.STABLE, "zai-proxy", 0), driver.state, "bad")
    driver.cluster.canary_spec = driver.cluster.canary_ready = 0
    with pytest.raises(InvariantViolation):
        before = sum(driver.cluster.behind_service())
        driver._apply(bad)
        driver._check(bad, before)


# ---------------------------------------------------------------------------------------------
# Surge shifting


def test_surge_mode_keeps_stable_at_n_until_the_pin_then_scales_it_down() -> None:
    driver = Driver(make_spec(shifting="surge", maxSurge="100%"))
    decisions = driver.run(Phase.COMPLETED)
    assert scales(decisions) == [
        ("canary", 1),  # step 1: 25% asked, 1 beside 4 = 20%
        ("canary", 4),  # step 2: 50% = 4 beside 4; step 3 (75%) and the flip stay at 4/4
        ("stable", 0),  # after the pin and the bake: stable is out of the Service
    ]
    # The one stable scale-down comes after the selector was pinned and the bake passed.
    pin = next(i for i, d in enumerate(decisions) if isinstance(d.action, PatchService))
    down = next(
        i
        for i, d in enumerate(decisions)
        if isinstance(d.action, Scale) and d.action.role is DeploymentRole.STABLE
    )
    assert pin < down
    assert decisions[down].state.phase is Phase.SCALING_DOWN
    assert driver.serving_stopped == []


def test_standard_mode_stops_serving_pods_at_every_step() -> None:
    driver = Driver(make_spec())
    driver.run(Phase.COMPLETED)
    assert [n for _, n in driver.serving_stopped] == [1, 1, 1]


def test_surge_mode_without_room_for_the_flip_fails_before_moving_traffic() -> None:
    driver = Driver(make_spec(shifting="surge", maxSurge=1))
    decisions = driver.run(Phase.FAILED)
    assert scales(decisions) == []
    assert "shifting: surge needs maxSurge >= 4" in decisions[-1].state.message


def test_target_hash_bytes_are_those_persisted_states_carry() -> None:
    # Every persisted state's `target` is this hash: a new encoding would make each running
    # rollout look like a new one after an upgrade. (The value main computed before the hash
    # moved to `canonical_hash`.)
    assert target_hash(make_spec()) == "9533ebc14efa6d18"
