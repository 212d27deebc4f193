"""Rollback: traffic back on stable first, then canary out, then wait for stable Ready."""

from __future__ import annotations

from controller.core.plan import DeploymentRole, Move, rollback_split
from controller.core.rollout.context import Ctx, dur, pinned_selector, shared_selector
from controller.core.rollout.types import Decision, DecisionKind, PatchService
from controller.core.state import End, Phase


def begin_rollback(ctx: Ctx, reason: str, by: str = "ptc") -> Decision:
    return ctx.transition(
        Phase.ROLLING_BACK,
        DecisionKind.ROLLBACK,
        reason,
        by=by,
        weight=0.0,
    )


def rollback_selector(ctx: Ctx) -> dict[str, str]:
    shared = dict(ctx.state.progress.shared_selector) or shared_selector(
        ctx.spec, ctx.observed.selector
    )
    if ctx.spec.stable.version:
        return pinned_selector(shared, ctx.spec, ctx.spec.stable.version)
    return shared


def rolling_back(ctx: Ctx) -> Decision:
    """Traffic first: stable up, canary out of the Service, selector back; then wait Ready."""
    obs = ctx.observed
    target = rollback_split(ctx.spec, ctx.limits.total)
    wanted = rollback_selector(ctx)
    selector = dict(obs.selector) if obs.selector is not None else None
    if obs.stable.exists and obs.stable.spec_replicas < target.stable:
        return ctx.scale(Move(DeploymentRole.STABLE, target.stable), "rollback")
    on_canary_only = (
        selector is not None and selector.get(ctx.spec.version_label) == ctx.spec.canary.version
    )
    if on_canary_only or (
        selector is not None and selector != wanted and obs.stable.ready_replicas > 0
    ):
        if obs.stable.ready_replicas == 0:
            return ctx.wait("rollback: waiting for a Ready stable pod before moving the selector")
        return ctx.transition(
            Phase.ROLLING_BACK,
            DecisionKind.SELECT_STABLE,
            f"Service selector set back to {wanted}",
            action=PatchService(wanted),
        )
    if obs.canary.exists and obs.canary.spec_replicas > target.canary:
        if obs.stable.ready_replicas == 0 and obs.canary.ready_replicas > 0:
            return ctx.wait("rollback: waiting for a Ready stable pod before removing canary")
        return ctx.scale(Move(DeploymentRole.CANARY, target.canary), "rollback")
    if obs.stable.ready_replicas < target.stable:
        return ctx.wait(f"rollback: {obs.stable.ready_replicas}/{target.stable} stable pods Ready")
    auto = ctx.spec.rollback.auto_retry and ctx.state.attempt < ctx.spec.rollback.max_attempts
    nxt = (
        f"; retrying automatically after {dur(ctx.spec.rollback.cooldown)}"
        if auto
        else "; `ptc retry` starts again after the cooldown"
    )
    return ctx.transition(
        Phase.ROLLED_BACK,
        DecisionKind.ROLLED_BACK,
        f"rolled back: {target.stable} stable pod(s) Ready, canary at {target.canary}{nxt}",
        end=End(ctx.now),
    )
