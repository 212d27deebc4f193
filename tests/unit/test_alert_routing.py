"""Alerts to rollouts (pure): the payload, matching, the action, the command and its delivery."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.core.alerts.payload import Alert, PayloadError, parse_notification
from controller.core.alerts.routes import ALERT_VARIABLES, compile_routes, variables
from controller.core.alerts.routing import (
    BY_MAX,
    DETAIL_MAX,
    AlertMatch,
    Delivery,
    Outcome,
    alert_id,
    build_command,
    delivery,
    route_alerts,
)
from controller.core.analysis.templates import ROLLOUT_VARIABLES, QueryContext
from controller.core.config.model import AlertAction, Side
from controller.core.rollout import Command, CommandKind, EventType
from controller.core.state import Phase, RolloutState
from controller.shell.command_annotation import encode_command, parse_command
from tests.unit.rollout_model import Driver, make_spec
from tests.unit.states import state as make_state

STARTS = "2026-11-27T12:00:00.123456789Z"
GENERATOR = "http://prometheus:9090/graph?g0.expr=zai_proxy_502_ratio+%3E+0.1"

# What Alertmanager 0.25 posts (fields and shapes as its webhook sends them).
NOTIFICATION: dict[str, Any] = {
    "receiver": "ptc",
    "status": "firing",
    "alerts": [
        {
            "status": "firing",
            "labels": {
                "alertname": "ZaiProxyCanaryBadGateway",
                "namespace": "devpod",
                "version": "v2",
                "severity": "critical",
            },
            "annotations": {"summary": "502s on the canary"},
            "startsAt": STARTS,
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": GENERATOR,
            "fingerprint": "5f1a3c2b9d8e7f60",
        }
    ],
    "groupLabels": {"alertname": "ZaiProxyCanaryBadGateway"},
    "commonLabels": {"alertname": "ZaiProxyCanaryBadGateway", "namespace": "devpod"},
    "commonAnnotations": {"summary": "502s on the canary"},
    "externalURL": "http://alertmanager:9093",
    "version": "4",
    "groupKey": '{}:{alertname="ZaiProxyCanaryBadGateway"}',
    "truncatedAlerts": 0,
}

ROUTES = [
    {"matchers": ['alertname=~"ZaiProxy.*"', 'namespace="{{ namespace }}"'], "action": "pause"},
    {
        "matchers": ['alertname="ZaiProxyCanaryBadGateway"', 'version="{{ canary_version }}"'],
        "action": "rollback",
    },
]


def alert(**changes: Any) -> Alert:
    data = {**NOTIFICATION["alerts"][0], **changes}
    return parse_notification(json.dumps({**NOTIFICATION, "alerts": [data]}).encode()).alerts[0]


# --- the payload ------------------------------------------------------------------------------


def test_a_real_notification_parses_and_extra_fields_are_ignored() -> None:
    body = {**NOTIFICATION, "somethingNew": {"x": 1}}
    body["alerts"] = [{**NOTIFICATION["alerts"][0], "silencedBy": []}]
    n = parse_notification(json.dumps(body).encode())
    [a] = n.alerts
    assert a.name == "ZaiProxyCanaryBadGateway" and a.labels["version"] == "v2"
    assert a.generator_url == GENERATOR and a.fingerprint == "5f1a3c2b9d8e7f60"
    assert a.starts_at.isoformat() == "2026-11-27T12:00:00.123456+00:00"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"[]", "body: Input should be an object"),
        (json.dumps({**NOTIFICATION, "version": "3"}).encode(), "version: Input should be '4'"),
        (json.dumps({k: v for k, v in NOTIFICATION.items() if k != "alerts"}).encode(), "alerts"),
        (
            json.dumps(
                {**NOTIFICATION, "alerts": [{**NOTIFICATION["alerts"][0], "labels": {"a": 1}}]}
            ).encode(),
            "alerts.0.labels.a: Input should be a valid string",
        ),
        (
            json.dumps(
                {**NOTIFICATION, "alerts": [{**NOTIFICATION["alerts"][0], "startsAt": "soon"}]}
            ).encode(),
            "alerts.0.startsAt",
        ),
        (
            json.dumps(
                {
                    **NOTIFICATION,
                    "alerts": [{**NOTIFICATION["alerts"][0], "startsAt": "2026-11-27T12:00:00"}],
                }
            ).encode(),
            "alerts.0.startsAt: Input should have timezone info",
        ),
        (b'{"version": "4", "x": ' + b"[" * 500 + b"]" * 500 + b"}", "recursion limit"),
    ],
)
def test_malformed_payloads_say_why(body: bytes, message: str) -> None:
    with pytest.raises(PayloadError, match=message.replace("(", r"\(")):
        parse_notification(body)


# --- matching and the action ------------------------------------------------------------------


def test_alert_variables_are_the_rollouts_query_variables() -> None:
    spec = make_spec(canary={"deployment": "zai.proxy-v2", "version": "v2"})
    mine = variables(spec)
    assert tuple(mine) == ALERT_VARIABLES
    assert tuple(v for v in ROLLOUT_VARIABLES if v != "window") == ALERT_VARIABLES
    theirs = QueryContext(spec, timedelta(minutes=1)).variables(Side.CANARY)
    assert all(mine[k] == theirs[k] for k in mine)


def test_canary_pod_regex_matches_the_canarys_pods_only() -> None:
    spec = make_spec(
        canary={"deployment": "zai.proxy-v2", "version": "v2"},
        alerts=[{"matchers": ['pod=~"{{ canary_pod_regex }}"']}],
    )
    [(matchers, _)] = compile_routes(spec)
    assert all(m.matches({"pod": "zai.proxy-v2-7d9f8b6c5d-x2x9z"}) for m in matchers)
    for other in ("zaiXproxy-v2-7d9f8b6c5d-x2x9z", "zai-proxy-7d9f8b6c5d-x2x9z"):
        assert not all(m.matches({"pod": other}) for m in matchers)


def test_a_firing_alert_rolls_back_a_rollout_in_flight() -> None:
    spec = make_spec(alerts=ROUTES)
    [out] = route_alerts([alert()], [(spec, Phase.PROGRESSING)])
    assert out.outcome is Outcome.COMMAND and out.command is not None
    # Both routes match; rollback beats pause.
    assert out.command.kind is CommandKind.ABORT
    assert out.command.by == "alert:ZaiProxyCanaryBadGateway"
    detail = out.command.detail
    for part in (
        "ZaiProxyCanaryBadGateway",
        'namespace="devpod"',
        'version="v2"',
        "firing since 2026-11-27T12:00:00.123456Z",
        GENERATOR,
        out.command.id,
    ):
        assert part in detail


@pytest.mark.parametrize("order", [1, -1])
def test_rollback_beats_pause_whatever_the_route_order(order: int) -> None:
    spec = make_spec(alerts=ROUTES[::order])
    [out] = route_alerts([alert()], [(spec, Phase.PROGRESSING)])
    assert out.command is not None and out.command.kind is CommandKind.ABORT


def test_pause_only_when_no_rollback_route_matches() -> None:
    spec = make_spec(alerts=ROUTES)
    other = alert(labels={"alertname": "ZaiProxyLatency", "namespace": "devpod"})
    [out] = route_alerts([other], [(spec, Phase.HOLDING)])
    assert out.command is not None and out.command.kind is CommandKind.PAUSE


def test_no_match_wrong_namespace_or_canary_version_and_no_routes() -> None:
    spec = make_spec(alerts=ROUTES)
    elsewhere = alert(labels={"alertname": "ZaiProxyCanaryBadGateway", "namespace": "prod"})
    assert route_alerts([elsewhere], [(spec, Phase.PROGRESSING)]) == []
    assert route_alerts([alert()], [(make_spec(), Phase.PROGRESSING)]) == []
    v3 = alert(
        labels={"alertname": "ZaiProxyCanaryBadGateway", "namespace": "devpod", "version": "v3"}
    )
    [out] = route_alerts([v3], [(spec, Phase.PROGRESSING)])
    assert out.command is not None and out.command.kind is CommandKind.PAUSE  # only route 1


@pytest.mark.parametrize(
    ("phase", "acts"),
    [
        (None, False),
        (Phase.PENDING, True),
        (Phase.PREFLIGHT, True),
        (Phase.PROGRESSING, True),
        (Phase.HOLDING, True),
        (Phase.PAUSED, True),  # a paused rollout can still be rolled back
        (Phase.FLIPPING, True),
        (Phase.BAKING, True),
        (Phase.SCALING_DOWN, True),
        (Phase.ROLLING_BACK, False),
        (Phase.ROLLED_BACK, False),
        (Phase.COMPLETED, False),
        (Phase.FAILED, False),
    ],
)
def test_only_a_rollout_in_flight_is_acted_on(phase: Phase | None, acts: bool) -> None:
    spec = make_spec(alerts=ROUTES)
    [out] = route_alerts([alert()], [(spec, phase)])
    assert (out.outcome is Outcome.COMMAND) is acts
    if not acts:
        assert out.command is None and out.why_not


def test_pause_of_a_paused_rollout_is_recorded_only() -> None:
    spec = make_spec(alerts=[ROUTES[0]])
    [out] = route_alerts([alert()], [(spec, Phase.PAUSED)])
    assert out.outcome is Outcome.RECORDED and "paused already" in out.why_not


def test_resolved_alerts_are_recorded_never_acted_on() -> None:
    spec = make_spec(alerts=ROUTES)
    resolved = alert(status="resolved", endsAt="2026-11-27T12:05:00Z")
    [out] = route_alerts([resolved], [(spec, Phase.PROGRESSING)])
    assert out.outcome is Outcome.RECORDED and out.command is None
    assert [m.alert for m in out.resolved] == [resolved]


def test_one_command_per_rollout_named_after_the_earliest_rollback_alert() -> None:
    spec = make_spec(alerts=ROUTES)
    early = alert(startsAt="2026-11-27T11:00:00Z", fingerprint="aa")
    late = alert(startsAt="2026-11-27T11:30:00Z", fingerprint="bb")
    pause = alert(
        labels={"alertname": "ZaiProxyLatency", "namespace": "devpod"},
        startsAt="2026-11-27T10:00:00Z",
    )
    second = make_spec(name="other", service="other", alerts=ROUTES)
    outs = route_alerts([late, pause, early], [(spec, Phase.BAKING), (second, Phase.COMPLETED)])
    assert [o.rollout.name for o in outs] == ["zai-proxy", "other"]
    command = outs[0].command
    assert command is not None and command.kind is CommandKind.ABORT
    assert command.id == alert_id(early, AlertAction.ROLLBACK)
    assert "also firing: ZaiProxyCanaryBadGateway, ZaiProxyLatency" in command.detail
    assert outs[1].outcome is Outcome.RECORDED and len(outs[1].firing) == 3


def test_the_command_id_is_one_per_firing() -> None:
    a = alert()
    assert alert_id(a, AlertAction.ROLLBACK) == alert_id(alert(), AlertAction.ROLLBACK)
    assert alert_id(a, AlertAction.ROLLBACK) != alert_id(a, AlertAction.PAUSE)
    refired = alert(startsAt="2026-11-27T13:00:00Z")
    assert alert_id(refired, AlertAction.ROLLBACK) != alert_id(a, AlertAction.ROLLBACK)
    other = alert(fingerprint="0123")
    assert alert_id(other, AlertAction.ROLLBACK) != alert_id(a, AlertAction.ROLLBACK)
    # Without a fingerprint the label set identifies the alert.
    bare = alert(fingerprint="")
    assert alert_id(bare, AlertAction.ROLLBACK) == alert_id(
        alert(fingerprint=""), AlertAction.ROLLBACK
    )


@given(st.dictionaries(st.text(min_size=1, max_size=30), st.text(max_size=300), max_size=30))
def test_the_detail_and_by_are_bounded_and_keep_the_id(labels: dict[str, str]) -> None:
    command = build_command(AlertMatch(alert(labels=labels), AlertAction.ROLLBACK))
    assert len(command.detail) <= DETAIL_MAX and len(command.by) <= BY_MAX
    assert command.detail.endswith(f"[{command.id}]")
    assert command.by.startswith("alert:")


# --- delivery and the command path ------------------------------------------------------------

ABORT = Command(CommandKind.ABORT, id="alert-1", by="alert:X", detail="alert X [alert-1]")


def state(**changes: Any) -> RolloutState:
    return make_state(Phase.PROGRESSING, **changes)


@pytest.mark.parametrize(
    ("st_", "pending", "expected"),
    [
        (None, None, Delivery.WRITE),
        (state(), None, Delivery.WRITE),
        # The annotation holds an applied command: overwrite it (it would look new otherwise).
        (state(last_command="pause-1"), Command(CommandKind.PAUSE, "pause-1"), Delivery.WRITE),
        (state(last_command="alert-1"), None, Delivery.DUPLICATE),
        (state(last_command="x"), ABORT, Delivery.DUPLICATE),  # written, not applied yet
        # A person's command waits to be applied: never overwrite it.
        (state(last_command="x"), Command(CommandKind.PROMOTE, "promote-2"), Delivery.BUSY),
        (None, Command(CommandKind.PROMOTE, "promote-2"), Delivery.BUSY),
    ],
)
def test_delivery(st_: RolloutState | None, pending: Command | None, expected: Delivery) -> None:
    assert delivery(st_, pending, ABORT) is expected


def test_a_firing_applied_before_is_a_duplicate_even_after_a_later_command() -> None:
    driver = Driver(make_spec())
    driver.run(Phase.PROGRESSING, first=True)
    paused = driver.step(Command(CommandKind.PAUSE, "alert-p", "alert:X", "alert X [alert-p]"))
    resumed = driver.step(Command(CommandKind.RESUME, "resume-1", "alice"))
    assert resumed.state.phase is Phase.PROGRESSING and paused.state.phase is Phase.PAUSED
    again = Command(CommandKind.PAUSE, "alert-p", "alert:X", "alert X [alert-p]")
    resume = Command(CommandKind.RESUME, "resume-1")
    # Alertmanager repeats the still-firing alert: the person who resumed is not overruled.
    assert delivery(resumed.state, resume, again) is Delivery.DUPLICATE


def test_the_alert_rides_the_command_path_into_the_record_and_the_event() -> None:
    driver = Driver(make_spec(alerts=ROUTES))
    driver.run(Phase.PROGRESSING, first=True)
    [out] = route_alerts([alert()], [(driver.spec, driver.state.phase if driver.state else None)])
    assert out.command is not None
    # Through the annotation, as the reconciler reads it.
    command = parse_command(encode_command(out.command))
    assert command == out.command
    d = driver.step(command)
    assert d.state.phase is Phase.ROLLING_BACK and d.state.last_command == command.id
    record = d.state.history[-1]
    assert record.decision == "rollback" and record.by == "alert:ZaiProxyCanaryBadGateway"
    assert record.reason == f"aborted by alert:ZaiProxyCanaryBadGateway: {command.detail}"
    assert d.event is not None and d.event.type is EventType.WARNING
    assert d.event.reason == "RollbackStarted" and GENERATOR in d.event.message


def test_an_alert_pause_records_the_alert() -> None:
    driver = Driver(make_spec(alerts=[ROUTES[0]]))
    driver.run(Phase.PROGRESSING, first=True)
    [out] = route_alerts([alert()], [(driver.spec, Phase.PROGRESSING)])
    assert out.command is not None
    d = driver.step(out.command)
    assert d.state.phase is Phase.PAUSED and d.event is not None
    assert d.event.reason == "RolloutPaused" and "ZaiProxyCanaryBadGateway" in d.event.message
    assert d.state.history[-1].by == "alert:ZaiProxyCanaryBadGateway"


def test_commands_without_detail_read_as_before() -> None:
    raw = json.dumps({"kind": "pause", "id": "pause-1", "by": "alice"})
    assert parse_command(raw) == Command(CommandKind.PAUSE, "pause-1", "alice")
    assert json.loads(encode_command(Command(CommandKind.PAUSE, "pause-1", "alice"))) == {
        "kind": "pause",
        "id": "pause-1",
        "by": "alice",
    }
