"""Starting a rollout, its preflight, and the phases where it rests."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from controller.core.config.model import Rollout
from controller.core.rollout.context import Ctx, dur, shared_selector
from controller.core.rollout.types import (
    Decision,
    DecisionKind,
    Observed,
    PreflightResult,
    RunPreflight,
)
from controller.core.state import End, Identity, Phase, Progress, RolloutState


def start(
    spec: Rollout,
    previous: RolloutState | None,
    observed: Observed,
    target: str,
    now: datetime,
    attempt: int,
    by: str = "ptc",
) -> Decision:
    base = RolloutState(
        Identity(
            revision=target,
            spec_hash=spec.spec_hash(),
            rollout=spec.name,
            stable=spec.stable.deployment,
            canary=spec.canary.deployment,
            steps=len(spec.steps),
        ),
        Progress(Phase.PENDING),
    )
    if previous is not None:
        # A command already applied stays applied, even for a new rollout on the Service.
        base = replace(base, last_command=previous.last_command)
        if previous.revision == target:
            base = replace(base, history=previous.history)
    ctx = Ctx(spec, base, observed, None, now)
    return ctx.transition(
        Phase.PREFLIGHT,
        DecisionKind.STARTED,
        f"rollout of {spec.canary.deployment} ({spec.canary.version}) over "
        f"{spec.stable.deployment} started, attempt {attempt}"
        + (f" (retry by {by})" if by != "ptc" else ""),
        by=by,
        attempt=attempt,
        started_at=now,
    )


PREFLIGHT_RETRY = timedelta(seconds=10)
NO_TRAFFIC_MOVED = "; no traffic moved: `ptc retry` starts again at once and uses no attempt"


def preflight(ctx: Ctx) -> Decision:
    result = ctx.observed.preflight
    since = ctx.state.progress.phase_since or ctx.now
    if result is None or result.at < since:
        return Decision(RunPreflight(), ctx.state, "running preflight checks")
    if result.problems:
        return preflight_failed(ctx, "preflight failed: " + "; ".join(result.problems))
    if result.waiting:
        return _preflight_waiting(ctx, result, since)
    total = ctx.spec.replicas or ctx.observed.stable.spec_replicas
    if total < 1:
        return preflight_failed(
            ctx,
            f"stable {ctx.spec.stable.deployment} has 0 replicas and the rollout sets none: "
            "set `replicas` in the config",
        )
    shared = shared_selector(ctx.spec, ctx.observed.selector)
    if not shared:
        return preflight_failed(
            ctx,
            f"the Service selector has no labels besides {ctx.spec.version_label!r}: "
            "set `sharedSelector`",
        )
    return ctx.transition(
        Phase.PROGRESSING,
        DecisionKind.PREFLIGHT_PASSED,
        f"preflight passed; shifting {total} replica(s) in {len(ctx.spec.steps)} step(s)"
        + "".join(f"; warning: {w}" for w in result.warnings)
        + (" (full text: PreflightWarning Events)" if result.warnings else ""),
        replicas=total,
        shared_selector=shared,
        step=0,
    )


def preflight_failed(ctx: Ctx, reason: str) -> Decision:
    """Failed before any traffic moved: recorded as such, so `retry` is free."""
    return ctx.transition(
        Phase.FAILED,
        DecisionKind.PREFLIGHT_FAILED,
        reason + NO_TRAFFIC_MOVED,
        end=End(ctx.now, failed_in=Phase.PREFLIGHT),
    )


def _preflight_waiting(ctx: Ctx, result: PreflightResult, since: datetime) -> Decision:
    """What time may fix is checked again every PREFLIGHT_RETRY, until preflight.timeout."""
    timeout = ctx.spec.preflight.timeout
    deadline = since + timeout
    waiting = "; ".join(result.waiting)
    if result.at >= deadline:
        return preflight_failed(
            ctx, f"preflight still waiting after {dur(timeout)} (preflight.timeout): {waiting}"
        )
    reason = f"preflight waiting: {waiting}"
    if ctx.state.message != reason:
        # Recorded once per distinct reason: the state (and `ptc status` read from the
        # cluster) says what preflight waits on, without a write every retry.
        return ctx.transition(Phase.PREFLIGHT, DecisionKind.PREFLIGHT_WAITING, reason)
    # The last run is at the deadline, so a pod Ready just in time still passes.
    retry_at = min(result.at + PREFLIGHT_RETRY, deadline)
    if ctx.now >= retry_at:
        return Decision(RunPreflight(), ctx.state, "re-running preflight checks")
    return ctx.wait(reason, retry_at)


def rolled_back(ctx: Ctx) -> Decision:
    rb = ctx.spec.rollback
    st = ctx.state
    if rb.auto_retry and st.attempt < rb.max_attempts and st.end is not None:
        ready_at = st.end.finished_at + rb.cooldown
        if ctx.now >= ready_at:
            return start(ctx.spec, st, ctx.observed, st.revision, ctx.now, attempt=st.attempt + 1)
        return ctx.wait(f"rolled back; automatic retry at {ready_at.isoformat()}", ready_at)
    return ctx.wait("rolled back")


def idle(ctx: Ctx) -> Decision:
    return ctx.wait(ctx.state.phase.value)


def pending(ctx: Ctx) -> Decision:
    return start(ctx.spec, ctx.state, ctx.observed, ctx.state.revision, ctx.now, ctx.state.attempt)
