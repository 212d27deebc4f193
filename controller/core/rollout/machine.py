"""The rollout state machine (pure): ``decide(spec, state, observed, verdicts, now) -> Decision``.

One call returns exactly one action and the state to persist with it. The shell executes the
action, persists the state if it changed, emits the event if there is one, and calls again
(at once after an action, at ``Wait.until`` or on the next watch event after a wait).

Crash safety comes from the shape, not from care at each call site: every scale action sets an
absolute replica count computed from what is observed, so repeating one after a crash is
harmless; every phase or step change is a `Persist` (or the selector patch that carries the
state) *before* anything acts on it; holds and bakes count from timestamps in the state.

Phases, in order: pending -> preflight -> progressing/holding (per step) -> flipping -> baking
-> scaling-down (retention) -> completed; rolling-back -> rolled-back from any active phase;
paused from any active phase; failed when the rollout cannot go on by itself.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from controller.core.analysis.evaluate import AnalysisSummary
from controller.core.config.model import Rollout
from controller.core.rollout.commands import apply_command
from controller.core.rollout.context import ACTIVE_TRAFFIC_PHASES, Ctx, target_hash
from controller.core.rollout.finish import baking, scaling_down
from controller.core.rollout.lifecycle import idle, pending, preflight, rolled_back, start
from controller.core.rollout.reload import WAITS_REASON, waits_for_rollout_in_flight
from controller.core.rollout.rollback import begin_rollback, rolling_back
from controller.core.rollout.steps import flipping, paused, progressing
from controller.core.rollout.types import Command, Decision, DecisionKind, Observed
from controller.core.state import End, Phase, RolloutState


def decide(
    spec: Rollout,
    state: RolloutState | None,
    observed: Observed,
    verdicts: AnalysisSummary | None,
    now: datetime,
    command: Command | None = None,
) -> Decision:
    """The one next action for a rollout, and the state to persist with it."""
    target = target_hash(spec)
    if state is None:
        return start(spec, None, observed, target, now, attempt=1)
    if state.revision != target:
        if waits_for_rollout_in_flight(state, target):
            return Ctx(spec, state, observed, verdicts, now).wait(WAITS_REASON)
        return start(spec, state, observed, target, now, attempt=1)
    ctx = Ctx(spec, state, observed, verdicts, now)
    if command is not None and command.id != state.last_command:
        return apply_command(ctx, command)
    if state.phase not in (Phase.ROLLING_BACK, *TERMINAL_OR_IDLE):
        if not observed.stable.exists and state.phase is not Phase.SCALING_DOWN:
            return ctx.transition(
                Phase.FAILED,
                DecisionKind.FAILED,
                f"stable Deployment {spec.stable.deployment} not found: nothing to roll back to",
                end=End(now, failed_in=state.phase),
            )
        if not observed.canary.exists and state.phase in ACTIVE_TRAFFIC_PHASES:
            return begin_rollback(ctx, f"canary Deployment {spec.canary.deployment} not found")
    handler = _HANDLERS[state.phase]
    return handler(ctx)


TERMINAL_OR_IDLE = (Phase.COMPLETED, Phase.ROLLED_BACK, Phase.FAILED, Phase.PENDING)


_HANDLERS: dict[Phase, Callable[[Ctx], Decision]] = {
    Phase.PENDING: pending,
    Phase.PREFLIGHT: preflight,
    Phase.PROGRESSING: progressing,
    Phase.HOLDING: progressing,
    Phase.PAUSED: paused,
    Phase.FLIPPING: flipping,
    Phase.BAKING: baking,
    Phase.SCALING_DOWN: scaling_down,
    Phase.COMPLETED: idle,
    Phase.ROLLING_BACK: rolling_back,
    Phase.ROLLED_BACK: rolled_back,
    Phase.FAILED: idle,
}
