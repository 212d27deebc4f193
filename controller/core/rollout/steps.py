"""The forward path to the flip: shift to each step, hold and judge it, advance, flip."""

from __future__ import annotations

from controller.core.plan import (
    Blocked,
    DeploymentRole,
    Split,
    flip_split,
    next_move,
    place_step,
    surge_shortfall,
)
from controller.core.rollout.context import ACTIVE_TRAFFIC_PHASES, Ctx, dur, pinned_selector
from controller.core.rollout.holds import (
    analysis_failed,
    capacity_gate,
    hold,
    judged_at_end,
    release,
    traffic_share,
)
from controller.core.rollout.types import Decision, DecisionKind, PatchService
from controller.core.state import Bake, End, Hold, HoldKind, Pause, Phase


def _step_target(ctx: Ctx, index: int) -> Split | None:
    return place_step(ctx.spec, ctx.spec.steps[index].weight, ctx.limits).split


def _shift(ctx: Ctx, target: Split, weight: float, what: str) -> Decision | None:
    """Move replicas towards `target`; None once settled there."""
    counts = ctx.observed.counts()
    move = next_move(counts, target, ctx.limits)
    if move is None:
        return None
    if isinstance(move, Blocked):
        return ctx.wait(f"{what}: {move.reason}")
    if move.role is DeploymentRole.CANARY and move.replicas > counts.canary_spec:
        closed = capacity_gate(ctx, weight)
        if closed is not None and ctx.state.progress.promoted_step != ctx.state.step:
            return hold(ctx, f"capacity gate: {closed.reason}", closed.verdict, HoldKind.CAPACITY)
    if ctx.state.holding is not None:
        return release(ctx, what)
    return ctx.scale(move, f"{what} ({target.canary} canary / {target.stable} stable)")


def progressing(ctx: Ctx) -> Decision:
    failed = analysis_failed(ctx)
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
        skewed = traffic_share(ctx, hold_end)
        if skewed is not None:
            return skewed
        judged = judged_at_end(ctx, hold_end, f"step {st.step + 1}", "hold")
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
    failed = analysis_failed(ctx)
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


def paused(ctx: Ctx) -> Decision:
    # Paused means "do not progress", not "ignore a failing canary".
    pause = ctx.state.pause
    if pause is not None and pause.from_phase in ACTIVE_TRAFFIC_PHASES:
        failed = analysis_failed(ctx)
        if failed is not None:
            return failed
    return ctx.wait(f"paused: {ctx.state.message}")
