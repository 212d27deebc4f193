"""The per-call context of `decide()` and the helpers every phase uses."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from controller.core.analysis.evaluate import AnalysisSummary, Verdict
from controller.core.config.model import Rollout, canonical_hash
from controller.core.durations import format_duration
from controller.core.plan import DeploymentRole, Limits, Move
from controller.core.rollout.types import (
    Action,
    Decision,
    DecisionKind,
    Event,
    Observed,
    Persist,
    Scale,
    Wait,
)
from controller.core.state import DecisionRecord, MetricRecord, Phase, RolloutState


def target_hash(spec: Rollout) -> str:
    """What is being rolled out; a change means a new rollout, not a tweak of this one."""
    key = {
        "namespace": spec.namespace,
        "service": spec.service,
        "stable": spec.stable.model_dump(mode="json"),
        "canary": spec.canary.model_dump(mode="json"),
        "versionLabel": spec.version_label,
    }
    return canonical_hash(key)


def shared_selector(spec: Rollout, observed_selector: Mapping[str, str] | None) -> dict[str, str]:
    """The configured shared selector, else the Service's selector minus the version label."""
    if spec.shared_selector is not None:
        return dict(spec.shared_selector)
    return {k: v for k, v in (observed_selector or {}).items() if k != spec.version_label}


def pinned_selector(shared: Mapping[str, str], spec: Rollout, version: str) -> dict[str, str]:
    """The shared selector plus the version label: one version only."""
    return {**shared, spec.version_label: version}


ACTIVE_TRAFFIC_PHASES = (
    Phase.PROGRESSING,
    Phase.HOLDING,
    Phase.FLIPPING,
    Phase.BAKING,
    Phase.PAUSED,
)


@dataclass
class Ctx:
    spec: Rollout
    state: RolloutState
    observed: Observed
    verdicts: AnalysisSummary | None
    now: datetime
    limits: Limits = field(init=False)

    def __post_init__(self) -> None:
        total = (
            self.state.progress.replicas
            or self.spec.replicas
            or max(self.observed.stable.spec_replicas, 1)
        )
        self.limits = Limits.for_rollout(self.spec, total)

    def record(self, decision: str, reason: str, by: str = "ptc") -> DecisionRecord:
        metrics: tuple[MetricRecord, ...] = ()
        if self.verdicts is not None:
            metrics = tuple(m.to_record() for m in self.verdicts.metrics)
        return DecisionRecord(
            at=self.now,
            phase=self.state.phase.value,
            step=self.state.step,
            decision=decision,
            reason=reason,
            metrics=metrics,
            by=by,
            weight_observed=self.observed_share(),
        )

    def observed_share(self) -> float | None:
        """The canary's observed share of requests in percent, when measured."""
        share = self.observed.share
        percent = share.percent() if share is not None else None
        return round(percent, 2) if percent is not None else None

    def transition(
        self,
        phase: Phase,
        kind: DecisionKind,
        reason: str,
        *,
        action: Action | None = None,
        by: str = "ptc",
        **changes: object,
    ) -> Decision:
        """Move to `phase` (or stay, with `changes`), recorded, evented and persisted first.

        `changes` as `RolloutState.moved` takes them: the records of the phase left are dropped.
        """
        since = self.now if phase is not self.state.phase else self.state.progress.phase_since
        new = self.state.with_record(
            self.record(kind.decision, reason, by),
            phase=phase,
            phase_since=since,
            message=reason,
            **changes,
        )
        return Decision(action or Persist(), new, reason, Event(kind, reason))

    def scale(self, move: Move, why: str) -> Decision:
        name = (
            self.spec.canary.deployment
            if move.role is DeploymentRole.CANARY
            else self.spec.stable.deployment
        )
        reason = f"scale {move.role.value} {name} to {move.replicas}: {why}"
        new = self.state.with_record(self.record(f"scale-{move.role.value}", reason))
        return Decision(Scale(move.role, name, move.replicas), new, reason)

    def wait(
        self, reason: str, until: datetime | None = None, fresh_after: datetime | None = None
    ) -> Decision:
        return Decision(Wait(until, fresh_after), self.state, reason)

    @property
    def verdict(self) -> Verdict | None:
        return self.verdicts.verdict if self.verdicts is not None else None

    def fresh_verdict(self, since: datetime | None) -> Verdict | None:
        """The overall verdict if evaluated at or after `since` (stale ones don't count)."""
        if self.verdicts is None or since is None or self.verdicts.at < since:
            return None
        return self.verdicts.verdict


def dur(delta: timedelta) -> str:
    return format_duration(delta)
