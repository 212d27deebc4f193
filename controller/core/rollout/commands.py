"""Manual commands: promote, abort, pause, resume, retry — each applied exactly once."""

from __future__ import annotations

from dataclasses import replace

from controller.core.rollout.context import ACTIVE_TRAFFIC_PHASES, Ctx
from controller.core.rollout.lifecycle import start
from controller.core.rollout.rollback import begin_rollback
from controller.core.rollout.types import Command, CommandKind, Decision, DecisionKind
from controller.core.state import Pause, Phase


def apply_command(ctx: Ctx, cmd: Command) -> Decision:
    st = ctx.state

    def refuse(why: str) -> Decision:
        return ctx.transition(
            st.phase,
            DecisionKind.refused(cmd.kind),
            why,
            by=cmd.by,
            last_command=cmd.id,
        )

    if cmd.kind is CommandKind.ABORT:
        if st.phase.terminal or st.phase is Phase.ROLLING_BACK:
            return refuse(f"abort ignored: rollout is {st.phase.value}")
        new = begin_rollback(ctx, f"aborted by {cmd.by}{_about(cmd)}", by=cmd.by)
        return replace(new, state=replace(new.state, last_command=cmd.id))
    if cmd.kind is CommandKind.PAUSE:
        if st.phase.terminal or st.phase in (Phase.PAUSED, Phase.ROLLING_BACK):
            return refuse(f"pause ignored: rollout is {st.phase.value}")
        return ctx.transition(
            Phase.PAUSED,
            DecisionKind.PAUSED,
            f"paused by {cmd.by}{_about(cmd)}",
            by=cmd.by,
            pause=Pause(st.phase),
            last_command=cmd.id,
        )
    if cmd.kind is CommandKind.RESUME:
        if st.phase is not Phase.PAUSED:
            return refuse(f"resume ignored: rollout is {st.phase.value}, not paused")
        back = st.pause.from_phase if st.pause is not None else Phase.PROGRESSING
        return ctx.transition(
            back,
            DecisionKind.RESUMED,
            f"resumed by {cmd.by}",
            by=cmd.by,
            holding=None,
            last_command=cmd.id,
        )
    if cmd.kind is CommandKind.PROMOTE:
        if st.phase not in (*ACTIVE_TRAFFIC_PHASES, Phase.SCALING_DOWN):
            return refuse(f"promote ignored: rollout is {st.phase.value}")
        if st.phase is Phase.SCALING_DOWN:
            return ctx.transition(
                Phase.SCALING_DOWN,
                DecisionKind.PROMOTED,
                f"retention skipped by {cmd.by}",
                by=cmd.by,
                retention=replace(
                    st.retention,
                    scaled_down_at=st.retention.scaled_down_at
                    - ctx.spec.retention.scale_down_delay,
                )
                if st.retention is not None
                else None,
                last_command=cmd.id,
            )
        back = st.pause.from_phase if st.pause is not None else st.phase
        if back is Phase.HOLDING:
            back = Phase.PROGRESSING
        return ctx.transition(
            back,
            DecisionKind.PROMOTED,
            f"step {st.step + 1}: hold and gates skipped by {cmd.by}",
            by=cmd.by,
            promoted_step=st.step,
            holding=None,
            last_command=cmd.id,
        )
    # RETRY
    if st.phase not in (Phase.ROLLED_BACK, Phase.FAILED):
        return refuse(
            f"retry ignored: rollout is {st.phase.value}; retry follows a rollback or a failure"
        )
    failed_in = st.end.failed_in if st.end is not None else None
    if st.phase is Phase.FAILED and failed_in is not None and failed_in in NO_TRAFFIC_PHASES:
        # Nothing was shifted, so there is nothing to cool down from and no attempt was spent.
        retried = st.with_record(
            ctx.record(
                "retried",
                f"retry by {cmd.by}: failed in {failed_in.value} before any traffic moved; "
                f"attempt {st.attempt} starts again (no cooldown, no attempt used)",
                cmd.by,
            )
        )
        started = start(ctx.spec, retried, ctx.observed, st.revision, ctx.now, attempt=st.attempt)
        return replace(started, state=replace(started.state, last_command=cmd.id))
    if st.attempt >= ctx.spec.rollback.max_attempts:
        return refuse(
            f"retry refused: {st.attempt} of {ctx.spec.rollback.max_attempts} attempts used; "
            "change the canary in the config to start a new rollout"
        )
    finished = st.end.finished_at if st.end is not None else None
    if finished is not None and ctx.now < finished + ctx.spec.rollback.cooldown:
        left = finished + ctx.spec.rollback.cooldown - ctx.now
        return refuse(f"retry refused: cooldown has {left.total_seconds():.0f}s left")
    started = start(
        ctx.spec, st, ctx.observed, st.revision, ctx.now, attempt=st.attempt + 1, by=cmd.by
    )
    return replace(started, state=replace(started.state, last_command=cmd.id))


# A rollout that failed in these phases never shifted traffic.
NO_TRAFFIC_PHASES = (Phase.PENDING, Phase.PREFLIGHT)


def _about(cmd: Command) -> str:
    return f": {cmd.detail}" if cmd.detail else ""
