"""A modelled cluster that `decide()` can be driven against, one action at a time.

Pods are counts: a scale-up adds not-ready pods that become Ready when `ready_up()` says so; a
scale-down removes Ready pods at once (terminating pods leave the endpoints immediately). The
Service's Ready endpoints follow its selector. `step()` calls `decide()`, applies the action,
persists the state like the shell does, and checks the safety invariants around every action.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from controller.core.analysis.evaluate import AnalysisSummary, Sample, Verdict
from controller.core.analysis.share import ShareReading
from controller.core.config.model import Rollout
from controller.core.plan import DeploymentRole, Limits
from controller.core.rollout import (
    ACTIVE_TRAFFIC_PHASES,
    Command,
    Decision,
    DeleteDeployment,
    DeploymentView,
    Endpoints,
    Observed,
    PatchService,
    PreflightResult,
    RunPreflight,
    Scale,
    Wait,
    decide,
)
from controller.core.state import Phase, RolloutState

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)

SHIFTING = (Phase.PROGRESSING, Phase.HOLDING, Phase.FLIPPING)


def make_spec(**overrides: Any) -> Rollout:
    data: dict[str, Any] = {
        "name": "zai-proxy",
        "namespace": "devpod",
        "service": "zai-proxy",
        "sharedSelector": {"app": "zai-proxy"},
        "stable": {"deployment": "zai-proxy"},
        "canary": {"deployment": "zai-proxy-v2", "version": "v2"},
        "replicas": 4,
        "maxSurge": 1,
        "steps": [
            {"weight": 25, "hold": "1m"},
            {"weight": 50, "hold": "1m"},
            {"weight": 75, "hold": "1m"},
        ],
        "flip": {"bake": "2m"},
        "retention": {"scaleDownDelay": "10m"},
        "analysis": {
            "interval": "10s",
            "maxHold": "5m",
            "metrics": [
                {
                    "name": "bad-gateway",
                    "counterRatio": {
                        "metric": "zai_proxy_requests_total",
                        "numerator": {"status_code": "502"},
                    },
                    "max": 0.05,
                }
            ],
        },
    }
    data.update(overrides)
    return Rollout.model_validate(data)


class InvariantViolation(AssertionError):
    """A safety invariant of DESIGN.md §4 broke."""


@dataclass
class Cluster:
    """Two Deployments and a Service, as counts."""

    stable_spec: int = 4
    stable_ready: int = 4
    canary_spec: int = 0
    canary_ready: int = 0
    stable_exists: bool = True
    canary_exists: bool = True
    selector: dict[str, str] = field(default_factory=lambda: {"app": "zai-proxy"})
    stable_version: str | None = None
    canary_version: str = "v2"

    def behind_service(self) -> tuple[int, int]:
        """Ready (canary, stable) pods the Service's selector matches."""
        version = self.selector.get("version")
        canary = self.canary_ready if version in (None, self.canary_version) else 0
        stable = self.stable_ready if version is None or version == self.stable_version else 0
        return canary, stable

    def ready_up(self, canary: int, stable: int) -> None:
        """Some starting pods become Ready."""
        self.canary_ready = min(self.canary_spec, self.canary_ready + canary)
        self.stable_ready = min(self.stable_spec, self.stable_ready + stable)

    def observed(self, now: datetime, verdict_capacity: float | None = None) -> Observed:
        canary, stable = self.behind_service()
        return Observed(
            stable=DeploymentView(self.stable_exists, self.stable_spec, self.stable_ready),
            canary=DeploymentView(self.canary_exists, self.canary_spec, self.canary_ready),
            selector=dict(self.selector),
            endpoints=Endpoints(canary=canary, stable=stable),
            preflight=PreflightResult(now),
            capacity=Sample(verdict_capacity) if verdict_capacity is not None else None,
            demand=Sample(100.0),
        )


@dataclass
class Driver:
    """Drives decide() against a Cluster, as the daemon would, checking invariants."""

    spec: Rollout
    cluster: Cluster = field(default_factory=Cluster)
    now: datetime = T0
    state: RolloutState | None = None
    verdict: Verdict | None = Verdict.PASS
    capacity: float | None = None
    share: ShareReading | None = None  # the observed request share decide() is shown
    decisions: list[Decision] = field(default_factory=list)
    lose_next_persist: bool = False
    # Pods scaled away while the Service still routed to them: (phase of the decision, count).
    serving_stopped: list[tuple[Phase, int]] = field(default_factory=list)

    def summary(self) -> AnalysisSummary | None:
        if self.verdict is None:
            return None
        return AnalysisSummary(self.now, self.verdict)

    def step(self, command: Command | None = None) -> Decision:
        share = self.share  # measured now, unless the test says when
        if share is not None and share.at is None:
            share = replace(share, at=self.now)
        obs = replace(self.cluster.observed(self.now, self.capacity), share=share)
        d = decide(self.spec, self.state, obs, self.summary(), self.now, command)
        self.decisions.append(d)
        before_canary, before_stable = self.cluster.behind_service()
        self._apply(d)
        self._check(d, before_canary + before_stable)
        if self.lose_next_persist and not isinstance(d.action, PatchService):
            self.lose_next_persist = False  # crash: the action happened, its state write did not
        else:
            self.state = d.state
        return d

    def _apply(self, d: Decision) -> None:
        a = d.action
        if isinstance(a, Scale):
            canary_behind, stable_behind = self.cluster.behind_service()
            spec, behind = (
                (self.cluster.canary_spec, canary_behind)
                if a.role is DeploymentRole.CANARY
                else (self.cluster.stable_spec, stable_behind)
            )
            if a.replicas < spec and behind > 0:
                self.serving_stopped.append((d.state.phase, min(spec - a.replicas, behind)))
            if a.role is DeploymentRole.CANARY:
                self.cluster.canary_spec = a.replicas
                self.cluster.canary_ready = min(self.cluster.canary_ready, a.replicas)
            else:
                self.cluster.stable_spec = a.replicas
                self.cluster.stable_ready = min(self.cluster.stable_ready, a.replicas)
        elif isinstance(a, PatchService):
            self.cluster.selector = dict(a.selector)
        elif isinstance(a, DeleteDeployment):
            assert a.role is DeploymentRole.STABLE
            self.cluster.stable_exists = False
            self.cluster.stable_spec = self.cluster.stable_ready = 0
        elif isinstance(a, RunPreflight | Wait):
            pass

    def _check(self, d: Decision, ready_before: int) -> None:
        canary, stable = self.cluster.behind_service()
        ready_after = canary + stable
        if isinstance(d.action, Scale | PatchService | DeleteDeployment):
            if ready_before > 0 and ready_after == 0:
                raise InvariantViolation(
                    f"{self.now}: {d.action} left the Service with no Ready pod ({d.reason})"
                )
            phase = self.state.phase if self.state else Phase.PENDING
            if phase in SHIFTING and d.state.phase in SHIFTING and self.state is not None:
                total = self.state.progress.replicas or self.spec.replicas or 1
                floor = Limits.for_rollout(self.spec, total).floor
                if ready_after < min(floor, ready_before):
                    raise InvariantViolation(
                        f"{self.now}: {d.action} took Ready pods behind the Service from "
                        f"{ready_before} to {ready_after}, under the floor {floor}"
                    )
        if (
            isinstance(d.action, Scale)
            and d.action.role is DeploymentRole.CANARY
            and d.action.replicas > self.cluster.canary_ready
            and d.state.phase not in (*ACTIVE_TRAFFIC_PHASES, Phase.ROLLING_BACK)
        ):
            raise InvariantViolation(f"canary scaled up in phase {d.state.phase}")

    def run(
        self, until: Phase | tuple[Phase, ...], limit: int = 400, first: bool = False
    ) -> list[Decision]:
        """Step until the phase is reached and waiting (or just reached, with `first`).

        Pods become Ready and time passes whenever the controller waits.
        """
        targets = until if isinstance(until, tuple) else (until,)
        out = []
        for _ in range(limit):
            d = self.step()
            out.append(d)
            if d.state.phase in targets and (first or isinstance(d.action, Wait)):
                return out
            if isinstance(d.action, Wait):
                self.cluster.ready_up(99, 99)
                self.now = d.action.until if d.action.until else self.now + timedelta(seconds=5)
        raise AssertionError(
            f"did not reach {targets} in {limit} steps; "
            f"last: {out[-1].state.phase} {out[-1].reason}"
        )
