"""What ptc does with one Alertmanager notification (the shell around `routing`).

Per rollout the notification matches: a firing alert's command is delivered (the reconciler
applies it at its next reconcile); a resolved alert, or a firing one for a rollout not in
flight, is recorded — logged and an Event on the rollout's Service — and changes nothing.
Anything that could not be done now (a write failed, a person's command still waits) makes the
answer 503, so Alertmanager sends the notification again; what was done is not done twice.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from controller.core.alerts.payload import Alert, Notification
from controller.core.alerts.routing import (
    AlertMatch,
    Delivery,
    Outcome,
    RolloutAlerts,
    describe,
    route_alerts,
)
from controller.core.state import Phase, StateError, format_timestamp, read_state
from controller.shell.alertmanager.deliver import DeliveryError
from controller.shell.kube import KubeError, NotLeader
from controller.shell.metrics import Metrics

if TYPE_CHECKING:
    from controller.shell.reconciler import RolloutReconciler

log = structlog.get_logger("ptc.alerts")


@dataclass
class Receipt:
    """The answer to one notification: per rollout what happened, and whether to retry."""

    results: list[dict[str, Any]] = field(default_factory=list)
    retry: list[str] = field(default_factory=list)  # why Alertmanager should send it again
    not_leader: bool = False


def _phase(reconciler: RolloutReconciler) -> Phase | None:
    svc = reconciler.service()
    if svc is None:
        return None
    with contextlib.suppress(StateError):
        state = read_state(svc.annotations)
        return state.phase if state is not None else None
    return None


def _alert_fields(alert: Alert) -> dict[str, Any]:
    return {
        "alert": alert.name,
        "labels": dict(alert.labels),
        "startsAt": format_timestamp(alert.starts_at),
        "generatorURL": alert.generator_url,
    }


async def receive(
    notification: Notification,
    reconcilers: Sequence[RolloutReconciler],
    metrics: Metrics,
) -> Receipt:
    """Act on (or record) every alert of `notification` for the rollouts it matches."""
    receipt = Receipt()
    by_name = {(r.spec.namespace, r.spec.name): r for r in reconcilers}
    outcomes = route_alerts(notification.alerts, [(r.spec, _phase(r)) for r in reconcilers])
    log.info(
        "alert notification",
        status=notification.status,
        alerts=len(notification.alerts),
        group=notification.group_key,
        rollouts=[f"{o.rollout.namespace}/{o.rollout.name}" for o in outcomes],
    )
    for outcome in outcomes:
        reconciler = by_name[(outcome.rollout.namespace, outcome.rollout.name)]
        if outcome.outcome is Outcome.COMMAND:
            await _deliver(outcome, reconciler, metrics, receipt)
            if receipt.not_leader:
                return receipt
        else:
            for match in outcome.firing:
                why = f"no {match.action.value}: {outcome.why_not}"
                await _record(reconciler, match, "AlertNotActedOn", why, metrics)
                receipt.results.append(_result(outcome, match, "recorded", outcome.why_not))
        for match in outcome.resolved:
            await _record(reconciler, match, "AlertResolved", "no action", metrics)
            receipt.results.append(_result(outcome, match, "resolved", "recorded, no action"))
    return receipt


def _result(outcome: RolloutAlerts, match: AlertMatch, what: str, why: str) -> dict[str, Any]:
    return {
        "rollout": outcome.rollout.name,
        "namespace": outcome.rollout.namespace,
        "alert": match.alert.name,
        "status": match.alert.status,
        "outcome": what,
        "reason": why,
    }


async def _deliver(
    outcome: RolloutAlerts,
    reconciler: RolloutReconciler,
    metrics: Metrics,
    receipt: Receipt,
) -> None:
    command = outcome.command
    assert command is not None
    chosen = outcome.firing[0]
    spec = outcome.rollout
    bound = log.bind(
        rollout=spec.name, namespace=spec.namespace, command=command.kind.value, id=command.id
    )
    try:
        delivered = await reconciler.alert(command)
    except NotLeader:
        receipt.not_leader = True
        return
    except (KubeError, DeliveryError) as exc:
        bound.warning("alert command not delivered; asking for a retry", error=str(exc))
        receipt.retry.append(f"{spec.namespace}/{spec.name}: {exc}")
        return
    action = chosen.action.value
    if delivered is Delivery.WRITE:
        bound.warning("alert command delivered", command=action, **_alert_fields(chosen.alert))
        what, why = action, f"{command.kind.value} delivered; applied at the next reconcile"
    elif delivered is Delivery.DUPLICATE:
        bound.info("alert already delivered", **_alert_fields(chosen.alert))
        what, why = "duplicate", "this firing was delivered before"
    else:
        bound.info("a person's command waits to be applied; asking for a retry")
        receipt.retry.append(f"{spec.namespace}/{spec.name}: a command waits to be applied")
        what, why = "busy", "a command waits to be applied; send again"
    metrics.alert_outcomes.labels(spec.namespace, spec.name, what).inc()
    receipt.results.append(_result(outcome, chosen, what, why))
    for other in outcome.firing[1:]:
        receipt.results.append(_result(outcome, other, what, f"with {chosen.alert.name}"))


async def _record(
    reconciler: RolloutReconciler,
    match: AlertMatch,
    reason: str,
    why: str,
    metrics: Metrics,
) -> None:
    spec = reconciler.spec
    outcome = "resolved" if match.alert.status == "resolved" else "recorded"
    metrics.alert_outcomes.labels(spec.namespace, spec.name, outcome).inc()
    log.info(
        "alert recorded",
        status=match.alert.status,
        rollout=spec.name,
        namespace=spec.namespace,
        why=why,
        **_alert_fields(match.alert),
    )
    message = f"{describe(match.alert)}: {why}"
    with contextlib.suppress(KubeError):  # Events record; losing one must not fail the rest
        await reconciler.emit("Normal", reason, message)
