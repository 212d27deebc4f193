"""What holds a step past its plan, and what ends a hold: analysis verdicts (fresh ones only),
the capacity gate, the observed traffic share, and maxHold's policy."""

from __future__ import annotations

from datetime import datetime, timedelta

from controller.core.analysis.evaluate import CapacityResult, Sample, Verdict, check_capacity
from controller.core.analysis.share import check_share
from controller.core.config.model import Policy
from controller.core.rollout.context import Ctx, dur
from controller.core.rollout.rollback import begin_rollback
from controller.core.rollout.types import Decision, DecisionKind
from controller.core.state import Holding, HoldKind, Pause, Phase

# How much older than its analysis interval a pass may be and still advance a step: the verdict
# is stamped with its evaluation's start, so a just-delivered one is already as old as the
# evaluation took, and the next is due an interval after it.
VERDICT_GRACE = timedelta(seconds=5)


def analysis_failed(ctx: Ctx) -> Decision | None:
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


def capacity_gate(ctx: Ctx, next_weight: float) -> CapacityResult | None:
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


def hold(ctx: Ctx, reason: str, verdict: Verdict, kind: HoldKind = HoldKind.ANALYSIS) -> Decision:
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


def release(ctx: Ctx, what: str) -> Decision:
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


def judged_at_end(ctx: Ctx, end: datetime, label: str, period: str) -> Decision | None:
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
    evaluation passes. A *fail*, however old, still rolls back (`analysis_failed`): it already
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
    return hold(
        ctx, f"{label}: analysis {verdict or 'pending'}: {why}", verdict or Verdict.INCONCLUSIVE
    )


def traffic_share(ctx: Ctx, end: datetime) -> Decision | None:
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
    return hold(
        ctx,
        f"step {ctx.state.step + 1}: {check.reason}",
        Verdict.INCONCLUSIVE,
        HoldKind.TRAFFIC_SHARE,
    )
