"""The forward path: shift to each step, hold and judge, flip, bake, retention."""

from __future__ import annotations

from datetime import datetime, timedelta

from controller.core.analysis.evaluate import (
    CapacityResult,
    Sample,
    Verdict,
    check_capacity,
    without_stable_baseline,
)
from controller.core.analysis.share import check_share
from controller.core.config.model import Policy
from controller.core.plan import (
    Blocked,
    DeploymentRole,
    Move,
    Split,
    flip_split,
    next_move,
    place_step,
    surge_shortfall,
)
from controller.core.rollout.context import ACTIVE_TRAFFIC_PHASES, Ctx, dur, pinned_selector
from controller.core.rollout.rollback import begin_rollback
from controller.core.rollout.types import (
    Decision,
    DecisionKind,
    DeleteDeployment,
    Event,
    PatchService,
)
from controller.core.state import Bake, End, Hold, Holding, HoldKind, Pause, Phase, Retention

# How much older than its analysis interval a pass may be and still advance a step: the verdict
# is stamped with its evaluation's start, so a just-delivered one is already as old as the
# evaluation took, and the next is due an interval after it.
VERDICT_GRACE = timedelta(seconds=5)


def _analysis_failed(ctx: Ctx) -> Decision | None:
    """Roll back if analysis says fail (it already honoured `for:`).

    Only a verdict from this attempt counts: after a rollback and `retry`, the last verdict of
    the failed attempt must not roll the new one back before it has been judged at all.
    """
    started = ctx.state.progress.started_at
    if (
        ctx.verdict is Verdict.FAIL
        and ctx.verdicts is not None
        and (started is None or ctx.verdicts.at >= started)
    ):
        failing = ", ".join(f"{m.name} {m.reason}" for m in ctx.verdicts.failing())
        return begin_rollback(ctx, f"analysis failed: {failing}")
    return None


def _step_target(ctx: Ctx, index: int) -> Split | None:
    return place_step(ctx.spec, ctx.spec.steps[index].weight, ctx.limits).split


def _capacity_gate(ctx: Ctx, next_weight: float) -> CapacityResult | None:
    """None when the gate is open (or not configured), else the closed gate's reading."""
    gate = ctx.spec.step_analysis(ctx.state.step).capacity_gate
    if gate is None or ctx.observed.canary.ready_replicas == 0:
        # Without serving canary pods there is nothing to measure; the first shift is small.
        return None
    result = check_capacity(
        gate,
        ctx.observed.capacity or Sample(None),
        ctx.observed.demand or Sample(None),
        next_weight,
    )
    return None if result.verdict is Verdict.PASS else result


def _shift(ctx: Ctx, target: Split, weight: float, what: str) -> Decision | None:
    """Move replicas towards `target`; None once settled there."""
    counts = ctx.observed.counts()
    move = next_move(counts, target, ctx.limits)
    if move is None:
        return None
    if isinstance(move, Blocked):
        return ctx.wait(f"{what}: {move.reason}")
    if move.role is DeploymentRole.CANARY and move.replicas > counts.canary_spec:
        closed = _capacity_gate(ctx, weight)
        if closed is not None and ctx.state.progress.promoted_step != ctx.state.step:
            return _hold(ctx, f"capacity gate: {closed.reason}", closed.verdict, HoldKind.CAPACITY)
    if ctx.state.holding is not None:
        return _release(ctx, what)
    return ctx.scale(move, f"{what} ({target.canary} canary / {target.stable} stable)")


def _hold(ctx: Ctx, reason: str, verdict: Verdict, kind: HoldKind = HoldKind.ANALYSIS) -> Decision:
    """Held past the plan: enter holding, or apply the maxHold policy once it is exceeded.

    The hold is recorded when it starts and when what it waits on (`kind`) changes, so the
    state says why; a reason whose numbers merely change is not rewritten each evaluation.
    """
    analysis = ctx.spec.step_analysis(ctx.state.step)
    holding = ctx.state.holding
    if holding is None or holding.kind != kind:
        return ctx.transition(
            Phase.HOLDING if ctx.state.phase is Phase.PROGRESSING else ctx.state.phase,
            DecisionKind.HOLD,
            reason,
            holding=Holding(holding.since if holding is not None else ctx.now, kind),
        )
    held = ctx.now - holding.since
    policy = analysis.on_error if verdict is Verdict.ERROR else analysis.on_inconclusive
    if held >= analysis.max_hold and policy is not Policy.HOLD:
        why = f"held {held.total_seconds():.0f}s > maxHold: {reason}"
        if policy is Policy.ROLLBACK:
            return begin_rollback(ctx, why)
        return ctx.transition(
            Phase.PAUSED,
            DecisionKind.PAUSED_AT_MAX_HOLD,
            why + " — resume or promote to go on, abort to roll back",
            pause=Pause(ctx.state.phase),
        )
    until = holding.since + analysis.max_hold if policy is not Policy.HOLD else None
    return ctx.wait(reason, until)


def _release(ctx: Ctx, what: str) -> Decision:
    """Leave a hold: recorded before the move it allows."""
    holding = ctx.state.holding
    held = (ctx.now - holding.since).total_seconds() if holding is not None else 0
    phase = Phase.PROGRESSING if ctx.state.phase is Phase.HOLDING else ctx.state.phase
    return ctx.transition(
        phase,
        DecisionKind.HOLD_RELEASED,
        f"{what}: hold released after {held:.0f}s",
        holding=None,
    )


def _judged_at_end(ctx: Ctx, end: datetime, label: str, period: str) -> Decision | None:
    """None if analysis passed on an evaluation taken at or after `end`, and recently; else
    wait or hold.

    `end` is when a hold (or the bake) is over. A verdict evaluated before it judged a window
    that can predate a fault that began since - with a 30 s interval a step advanced 22 s into
    a fault on a verdict taken 1 s after it began - so only one evaluated at or after `end`
    counts. Until it arrives the decision waits, asking the shell for an evaluation at once
    (`Wait.fresh_after`); if none has come within one analysis interval (the runner's next
    scheduled evaluation), the step holds as on any missing verdict, and maxHold applies.

    Nor does a pass older than the interval (plus :data:`VERDICT_GRACE`) advance: when the
    controller is behind, the newest verdict can be minutes old by the time this reconcile
    runs, and the canary may have started failing since. The step holds until a fresh
    evaluation passes. A *fail*, however old, still rolls back (`_analysis_failed`): it already
    held for its `for:`, and acting late on a confirmed breach beats not acting.
    """
    analysis = ctx.spec.step_analysis(ctx.state.step)
    if not analysis.metrics:
        return None
    verdict = ctx.fresh_verdict(max(end, ctx.now - analysis.interval - VERDICT_GRACE))
    if verdict is Verdict.PASS:
        return None
    if verdict is None and ctx.now < end + analysis.interval:
        return ctx.wait(
            f"{label}: {period} over; waiting for the analysis evaluated at its end",
            end + analysis.interval,
            fresh_after=end,
        )
    if verdict is not None and ctx.verdicts is not None:
        why = ctx.verdicts.explain()
    elif ctx.verdicts is not None and ctx.verdicts.at >= end:
        age = (ctx.now - ctx.verdicts.at).total_seconds()
        why = (
            f"the latest analysis is {age:.0f}s old, more than its interval "
            f"({dur(analysis.interval)}) + {dur(VERDICT_GRACE)}: not used to advance"
        )
    else:
        why = f"no analysis result since the {period} ended"
    return _hold(
        ctx, f"{label}: analysis {verdict or 'pending'}: {why}", verdict or Verdict.INCONCLUSIVE
    )


def _traffic_share(ctx: Ctx, end: datetime) -> Decision | None:
    """Hold while the canary's observed request share strays from the weight in place.

    Metrics that pass on a canary receiving 8 % of the requests a 50 % weight should send it
    judged too little of the traffic it is about to get; the step holds (and maxHold's
    inconclusive policy applies) until clients reconnect or a person decides. Only a share
    measured at or after the hold's `end` counts, as for verdicts; one that does not come
    within an analysis interval is not judged (the metrics still are).
    """
    analysis = ctx.spec.step_analysis(ctx.state.step)
    if analysis.traffic_share is None:
        return None
    reading = ctx.observed.share
    if reading is None or reading.at is None or reading.at < end:
        if ctx.now < end + analysis.interval:
            return ctx.wait(
                f"step {ctx.state.step + 1}: hold over; waiting for the traffic share measured "
                "at its end",
                end + analysis.interval,
                fresh_after=end,
            )
        return None
    check = check_share(
        ctx.state.progress.weight,
        ctx.observed.share,
        analysis.traffic_share.tolerance,
        analysis.min_requests,
    )
    if not check.off:
        return None
    return _hold(
        ctx,
        f"step {ctx.state.step + 1}: {check.reason}",
        Verdict.INCONCLUSIVE,
        HoldKind.TRAFFIC_SHARE,
    )


def progressing(ctx: Ctx) -> Decision:
    failed = _analysis_failed(ctx)
    if failed is not None:
        return failed
    st = ctx.state
    shared = dict(st.progress.shared_selector)
    if ctx.observed.selector is not None and dict(ctx.observed.selector) != shared:
        return ctx.transition(
            st.phase,
            DecisionKind.SELECT_SHARED,
            f"Service selector set to the shared selector {shared}",
            action=PatchService(shared),
        )
    step = ctx.spec.steps[min(st.step, len(ctx.spec.steps) - 1)]
    shortfall = surge_shortfall(ctx.spec, ctx.limits)
    if shortfall is not None and st.step == 0 and st.hold is None:
        # Found before any traffic moved: a rollout that could never flip does not start.
        return ctx.transition(Phase.FAILED, DecisionKind.FAILED, shortfall, end=End(ctx.now))
    target = _step_target(ctx, st.step)
    if target is None:
        return ctx.transition(
            Phase.FAILED,
            DecisionKind.FAILED,
            f"step {st.step + 1}: no split of {ctx.limits.total} replicas reaches "
            f"{step.weight:g}%; raise maxSurge",
            end=End(ctx.now),
        )
    if st.hold is None:
        shifted = _shift(ctx, target, target.weight, f"step {st.step + 1} to {step.weight:g}%")
        if shifted is not None:
            return shifted
        return ctx.transition(
            Phase.PROGRESSING,
            DecisionKind.STEP_REACHED,
            f"step {st.step + 1}/{len(ctx.spec.steps)}: {target.canary} canary / "
            f"{target.stable} stable ({target.weight:.1f}%), holding {dur(step.hold)}",
            hold=Hold(ctx.now, ctx.now + step.hold),
            holding=None,
            weight=round(target.weight, 2),
        )
    # Reached: keep the split true (someone may scale by hand), then hold and judge.
    drift = _shift(ctx, target, target.weight, f"restore step {st.step + 1}")
    if drift is not None:
        return drift
    promoted = st.progress.promoted_step == st.step
    hold_end = st.hold.reached_at + step.hold
    if ctx.now < hold_end and not promoted:
        return ctx.wait(f"step {st.step + 1}: holding until {hold_end.isoformat()}", hold_end)
    if not promoted:
        # The share first: metrics judged on a canary that gets a sliver of its traffic are
        # inconclusive at best, and the share says why.
        skewed = _traffic_share(ctx, hold_end)
        if skewed is not None:
            return skewed
        judged = _judged_at_end(ctx, hold_end, f"step {st.step + 1}", "hold")
        if judged is not None:
            return judged
        if step.manual_gate:
            return ctx.transition(
                Phase.PAUSED,
                DecisionKind.MANUAL_GATE,
                f"step {st.step + 1} passed; waiting at its manual gate: promote to go on",
                pause=Pause(Phase.PROGRESSING),
            )
    return _advance(ctx)


def _advance(ctx: Ctx) -> Decision:
    st = ctx.state
    nxt = st.step + 1
    if nxt < len(ctx.spec.steps):
        return ctx.transition(
            Phase.PROGRESSING,
            DecisionKind.ADVANCE,
            f"step {st.step + 1} done; next: step {nxt + 1} at {ctx.spec.steps[nxt].weight:g}%",
            step=nxt,
            hold=None,
            holding=None,
        )
    return ctx.transition(
        Phase.FLIPPING,
        DecisionKind.FLIP,
        f"all {len(ctx.spec.steps)} steps done; scaling canary to full size for the flip",
        step=len(ctx.spec.steps),
        holding=None,
    )


def flipping(ctx: Ctx) -> Decision:
    failed = _analysis_failed(ctx)
    if failed is not None:
        return failed
    shortfall = surge_shortfall(ctx.spec, ctx.limits)
    if shortfall is not None:
        # maxSurge was lowered by a reload after the rollout started: wait for a fix (or abort).
        return ctx.wait(f"flip: {shortfall}")
    last = _step_target(ctx, len(ctx.spec.steps) - 1) or Split(ctx.limits.total, 0)
    before = Split(ctx.observed.canary.spec_replicas, ctx.observed.stable.spec_replicas)
    target = flip_split(ctx.spec, ctx.limits, Split(last.canary, min(last.stable, before.stable)))
    shifted = _shift(ctx, target, 100.0, "flip")
    if shifted is not None:
        return shifted
    pinned = pinned_selector(ctx.state.progress.shared_selector, ctx.spec, ctx.spec.canary.version)
    return ctx.transition(
        Phase.BAKING,
        DecisionKind.FLIPPED,
        f"Service selector pinned to {pinned}; baking {dur(ctx.spec.flip.bake)} with "
        f"{target.stable} stable pod(s) warm",
        action=PatchService(pinned),
        bake=Bake(flipped_at=ctx.now),
    )


def baking(ctx: Ctx) -> Decision:
    if ctx.verdicts is not None:
        # Stable serves nothing after the flip: metrics judged only against it cannot count.
        ctx.verdicts = without_stable_baseline(ctx.verdicts, ctx.spec.analysis.metrics)
    failed = _analysis_failed(ctx)
    if failed is not None:
        return failed
    st = ctx.state
    pinned = pinned_selector(st.progress.shared_selector, ctx.spec, ctx.spec.canary.version)
    if ctx.observed.selector is not None and dict(ctx.observed.selector) != pinned:
        return ctx.transition(
            st.phase,
            DecisionKind.REPINNED,
            f"Service selector re-pinned to {pinned}",
            action=PatchService(pinned),
        )
    bake = st.bake or Bake()
    if bake.started_at is None:
        if ctx.observed.endpoints.stable > 0 or ctx.observed.endpoints.canary == 0:
            return ctx.wait("waiting until the Service's endpoints list only canary pods")
        return ctx.transition(
            Phase.BAKING,
            DecisionKind.BAKE_STARTED,
            f"endpoints list only canary pods; baking until "
            f"{(ctx.now + ctx.spec.flip.bake).isoformat()}",
            bake=Bake(bake.flipped_at, ctx.now, ctx.now + ctx.spec.flip.bake),
            weight=100.0,
        )
    bake_end = bake.started_at + ctx.spec.flip.bake
    promoted = st.progress.promoted_step == st.step
    if ctx.now < bake_end and not promoted:
        return ctx.wait(f"baking until {bake_end.isoformat()}", bake_end)
    if not promoted:
        judged = _judged_at_end(ctx, bake_end, "bake", "bake")
        if judged is not None:
            return judged
    return ctx.transition(
        Phase.SCALING_DOWN,
        DecisionKind.BAKE_PASSED,
        f"bake passed; scaling stable {ctx.spec.stable.deployment} to 0 and keeping it "
        f"{dur(ctx.spec.retention.scale_down_delay)}",
    )


def scaling_down(ctx: Ctx) -> Decision:
    st = ctx.state
    stable = ctx.observed.stable
    if st.retention is None:
        if stable.exists and stable.spec_replicas > 0:
            return ctx.scale(Move(DeploymentRole.STABLE, 0), "bake passed, retention starts")
        return ctx.transition(
            Phase.SCALING_DOWN,
            DecisionKind.RETENTION_STARTED,
            f"stable at 0; kept until "
            f"{(ctx.now + ctx.spec.retention.scale_down_delay).isoformat()} for instant rollback",
            retention=Retention(
                ctx.now,
                ctx.now + ctx.spec.retention.scale_down_delay,
                stable_uid=(stable.uid or None) if stable.exists else None,
            ),
        )
    end = st.retention.scaled_down_at + ctx.spec.retention.scale_down_delay
    if ctx.now < end:
        return ctx.wait(f"retention: stable kept at 0 until {end.isoformat()}", end)
    if ctx.spec.retention.delete_stable and stable.exists:
        return _delete_stable(ctx)
    return ctx.transition(
        Phase.COMPLETED,
        DecisionKind.COMPLETED,
        f"rollout complete: {ctx.spec.canary.deployment} ({ctx.spec.canary.version}) serves all "
        "traffic",
        end=End(ctx.now),
    )


def _delete_stable(ctx: Ctx) -> Decision:
    """Delete the stable Deployment retention kept: the one it kept, never a replacement.

    The uid recorded when retention started decides (a state from a ptc that recorded none
    falls back to the uid seen now). A person who replaced the Deployment since (delete and
    re-create under the same name) made it theirs: it stays, and the Event says so.
    """
    st, name = ctx.state, ctx.spec.stable.deployment
    seen = ctx.observed.stable.uid
    recorded = st.retention.stable_uid if st.retention is not None else None
    kept = recorded or seen
    if recorded and seen and seen != recorded:
        return ctx.transition(
            Phase.COMPLETED,
            DecisionKind.COMPLETED_STABLE_KEPT,
            f"rollout complete; stable Deployment {name} NOT deleted: it was replaced since "
            f"retention started (uid {recorded} then, {seen} now), so it is not the one "
            "ptc kept; delete it by hand if it is not wanted",
            end=End(ctx.now),
        )
    reason = f"retention over: deleting stable Deployment {name}" + (
        f" (uid {kept})" if kept else ""
    )
    new = st.with_record(ctx.record(DecisionKind.STABLE_DELETED.decision, reason))
    return Decision(
        DeleteDeployment(DeploymentRole.STABLE, name, uid=kept),
        new,
        reason,
        Event(DecisionKind.STABLE_DELETED, reason),
    )


def paused(ctx: Ctx) -> Decision:
    # Paused means "do not progress", not "ignore a failing canary".
    pause = ctx.state.pause
    if pause is not None and pause.from_phase in ACTIVE_TRAFFIC_PHASES:
        failed = _analysis_failed(ctx)
        if failed is not None:
            return failed
    return ctx.wait(f"paused: {ctx.state.message}")
