"""Which rollouts an Alertmanager notification acts on, and how (pure).

A rollout's ``alerts:`` routes are matched against each alert's labels (every matcher of a
route must hold; values may use the rollout's template variables). Per rollout and
notification the outcome is at most one command: ``rollback`` (an abort) beats ``pause``, the
earliest firing alert names it. A firing alert that matches a rollout not in flight, and a
resolved one, are recorded, never acted on.

The command's id is a hash of the alert's fingerprint (its label set) and ``startsAt``, so the
same firing — re-sent by Alertmanager on every ``repeat_interval``, by several Alertmanager
replicas, or retried — applies exactly once; a new firing of the alert is a new command.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from controller.core.alerts.matchers import quote
from controller.core.alerts.payload import Alert
from controller.core.alerts.routes import compile_routes, strongest_action
from controller.core.config.model import AlertAction, Rollout
from controller.core.rollout.types import Command, CommandKind
from controller.core.state import Phase, RolloutState, format_timestamp

BY_MAX = 80  # characters of `by` (it is kept in every decision record of the state)
DETAIL_MAX = 700  # characters of alert detail in a decision (an Event message keeps 1024)
_KIND = {AlertAction.ROLLBACK: CommandKind.ABORT, AlertAction.PAUSE: CommandKind.PAUSE}


@dataclass(frozen=True)
class AlertMatch:
    """An alert that matched one of a rollout's routes."""

    alert: Alert
    action: AlertAction


class Outcome(StrEnum):
    """What a notification does to one rollout."""

    COMMAND = "command"  # a firing alert: deliver `command`
    RECORDED = "recorded"  # resolved alerts, or a rollout not in flight: Event and log only


@dataclass(frozen=True)
class RolloutAlerts:
    """One notification's meaning for one rollout."""

    rollout: Rollout
    outcome: Outcome
    firing: tuple[AlertMatch, ...] = ()
    resolved: tuple[AlertMatch, ...] = ()
    command: Command | None = None
    why_not: str = ""  # for RECORDED with firing alerts: why nothing is done


def no_action_reason(phase: Phase | None, action: AlertAction) -> str:
    """Why a firing alert does nothing to a rollout in `phase` ("" when it acts)."""
    if phase is None:
        return "the rollout has not started"
    if phase.terminal:
        return f"the rollout is {phase.value}: nothing in flight"
    if phase is Phase.ROLLING_BACK:
        return "the rollout is rolling back already"
    if phase is Phase.PAUSED and action is AlertAction.PAUSE:
        return "the rollout is paused already"
    return ""


def route_alerts(
    alerts: Sequence[Alert], rollouts: Sequence[tuple[Rollout, Phase | None]]
) -> list[RolloutAlerts]:
    """What the alerts mean for each rollout they match (rollouts they miss are left out)."""
    out = []
    for rollout, phase in rollouts:
        firing: list[AlertMatch] = []
        resolved: list[AlertMatch] = []
        if not rollout.alerts:
            continue
        routes = compile_routes(rollout)
        for alert in alerts:
            action = strongest_action(routes, alert.labels)
            if action is not None:
                bucket = firing if alert.status == "firing" else resolved
                bucket.append(AlertMatch(alert, action))
        if not firing and not resolved:
            continue
        firing.sort(key=lambda m: (m.action is not AlertAction.ROLLBACK, m.alert.starts_at))
        why = no_action_reason(phase, firing[0].action) if firing else ""
        if firing and not why:
            command = build_command(firing[0], firing[1:])
            out.append(
                RolloutAlerts(rollout, Outcome.COMMAND, tuple(firing), tuple(resolved), command)
            )
        else:
            out.append(
                RolloutAlerts(
                    rollout, Outcome.RECORDED, tuple(firing), tuple(resolved), why_not=why
                )
            )
    return out


def alert_id(alert: Alert, action: AlertAction) -> str:
    """Stable per firing: the same alert re-sent gives the same id, a new firing a new one."""
    identity = alert.fingerprint or json.dumps(alert.labels, sort_keys=True)
    key = f"{action.value}|{identity}|{format_timestamp(alert.starts_at)}"
    return "alert-" + hashlib.sha256(key.encode()).hexdigest()[:16]


def describe(alert: Alert) -> str:
    """The alert for people: name, labels, since when, and where it comes from."""
    text = f"alert {alert.name or '(no alertname)'} {label_summary(alert.labels)}"
    if alert.status == "firing":
        text += f" firing since {format_timestamp(alert.starts_at)}"
    else:
        ended = format_timestamp(alert.ends_at) if alert.ends_at else "?"
        text += f" resolved at {ended} (firing since {format_timestamp(alert.starts_at)})"
    if alert.generator_url:
        text += f", source {alert.generator_url}"
    return text


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def build_command(chosen: AlertMatch, others: Sequence[AlertMatch] = ()) -> Command:
    """The command a firing alert gives: abort (rollback) or pause, named after the alert."""
    command_id = alert_id(chosen.alert, chosen.action)
    suffix = f" [{command_id}]"
    detail = describe(chosen.alert)
    if others:
        names = sorted({m.alert.name for m in others})
        detail += f"; also firing: {', '.join(names)}"
    return Command(
        _KIND[chosen.action],
        id=command_id,
        by=_cut(f"alert:{chosen.alert.name or 'unnamed'}", BY_MAX),
        detail=_cut(detail, DETAIL_MAX - len(suffix)) + suffix,
    )


class Delivery(StrEnum):
    """What to do with an alert's command, given the rollout's state and command annotation."""

    WRITE = "write"  # write it as the command annotation
    DUPLICATE = "duplicate"  # this firing was delivered before: nothing to do
    BUSY = "busy"  # a person's command waits to be applied: try again shortly


def delivery(state: RolloutState | None, pending: Command | None, command: Command) -> Delivery:
    """Whether to write `command`, given the state and the command annotation's `pending`."""
    if state is not None and (
        state.last_command == command.id
        or any(f"[{command.id}]" in r.reason for r in state.history)
    ):
        return Delivery.DUPLICATE
    if pending is not None and pending.id == command.id:
        return Delivery.DUPLICATE
    if pending is not None and (state is None or pending.id != state.last_command):
        return Delivery.BUSY
    return Delivery.WRITE


def label_summary(labels: Mapping[str, str]) -> str:
    """``{a="1", b="2"}`` for logs and Events."""
    return "{" + ", ".join(f"{k}={quote(v)}" for k, v in sorted(labels.items())) + "}"
