"""After the flip: the bake, retention with stable at 0, and the rollout's end."""

from __future__ import annotations

from controller.core.analysis.evaluate import without_stable_baseline
from controller.core.plan import DeploymentRole, Move
from controller.core.rollout.context import Ctx, dur, pinned_selector
from controller.core.rollout.holds import analysis_failed, judged_at_end
from controller.core.rollout.types import (
    Decision,
    DecisionKind,
    DeleteDeployment,
    Event,
    PatchService,
)
from controller.core.state import Bake, End, Phase, Retention


def baking(ctx: Ctx) -> Decision:
    if ctx.verdicts is not None:
        # Stable serves nothing after the flip: metrics judged only against it cannot count.
        ctx.verdicts = without_stable_baseline(ctx.verdicts, ctx.spec.analysis.metrics)
    failed = analysis_failed(ctx)
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
        judged = judged_at_end(ctx, bake_end, "bake", "bake")
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
