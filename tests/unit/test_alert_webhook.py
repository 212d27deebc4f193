"""POST /api/v1/alerts on the controller's real aiohttp server, against a fake controller.

Authentication, size limit, malformed bodies and the follower's answer must change nothing: the
fake reconciler records every command handed to it and every Event, so "nothing changed" is
checked, not assumed.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from controller.core.alerts.routing import Delivery
from controller.core.config.model import Rollout
from controller.core.rollout import Command, CommandKind
from controller.core.state import Phase, encode_state
from controller.shell.kube import NotLeader, ServiceInfo
from controller.shell.metrics import Metrics
from controller.shell.server import MAX_ALERT_BODY, Server
from tests.unit.rollout_model import make_spec
from tests.unit.states import state as make_state
from tests.unit.test_alert_routing import NOTIFICATION, ROUTES

TOKEN = "s3cret-token-0123456789"


@dataclass
class Options:
    alerts_token_file: str | None
    identity: str = "ptc-0"


@dataclass
class Elector:
    holder: str | None = "ptc-1"


@dataclass
class FakeReconciler:
    spec: Rollout
    phase: Phase | None = Phase.PROGRESSING
    answer: Delivery | Exception = Delivery.WRITE
    commands: list[Command] = field(default_factory=list)
    events: list[tuple[str, str, str]] = field(default_factory=list)

    def service(self) -> ServiceInfo:
        annotations = {}
        if self.phase is not None:
            annotations["ptc.dev/state"] = encode_state(make_state(self.phase))
        return ServiceInfo("devpod", "zai-proxy", "uid", {"app": "zai-proxy"}, annotations, "1")

    async def alert(self, command: Command) -> Delivery:
        if isinstance(self.answer, Exception):
            raise self.answer
        self.commands.append(command)
        return self.answer

    async def emit(self, type_: str, reason: str, message: str) -> None:
        self.events.append((type_, reason, message))


@dataclass
class FakeController:
    options: Options
    reconcilers: list[FakeReconciler]
    leader: bool = True
    metrics: Metrics = field(default_factory=Metrics)
    elector: Elector = field(default_factory=Elector)

    def is_leader(self) -> bool:
        return self.leader


@dataclass
class Harness:
    controller: FakeController
    session: aiohttp.ClientSession
    url: str

    @property
    def reconciler(self) -> FakeReconciler:
        return self.controller.reconcilers[0]

    async def post(
        self, body: bytes | Any = NOTIFICATION, token: str | None = TOKEN, **headers: str
    ) -> tuple[int, dict[str, Any], aiohttp.ClientResponse]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        async with self.session.post(self.url, data=data, headers=headers) as resp:
            return resp.status, await resp.json(), resp


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    controller = FakeController(
        Options(str(token_file)), [FakeReconciler(make_spec(alerts=ROUTES))]
    )
    server = Server(controller, "127.0.0.1", 0)  # type: ignore[arg-type]
    await server.start()
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            yield Harness(controller, session, server.url + "/api/v1/alerts")
    finally:
        await server.stop()


def unchanged(h: Harness) -> bool:
    return not h.reconciler.commands and not h.reconciler.events


async def test_a_firing_alert_hands_its_command_to_the_rollout(harness: Harness) -> None:
    status, body, _ = await harness.post()
    assert status == 200, body
    [command] = harness.reconciler.commands
    assert command.kind is CommandKind.ABORT and command.by == "alert:ZaiProxyCanaryBadGateway"
    assert body["results"] == [
        {
            "rollout": "zai-proxy",
            "namespace": "devpod",
            "alert": "ZaiProxyCanaryBadGateway",
            "status": "firing",
            "outcome": "rollback",
            "reason": "abort delivered; applied at the next reconcile",
        }
    ]
    metrics = harness.controller.metrics.render().decode()
    assert 'ptc_alert_webhook_requests_total{code="200"} 1.0' in metrics
    assert (
        'ptc_alert_outcomes_total{namespace="devpod",outcome="rollback",rollout="zai-proxy"}'
        in metrics
    )


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer wrong",
        f"Basic {TOKEN}",
        f"Bearer {TOKEN}x",
        f"Bearer {TOKEN[:-1]}",
    ],
)
async def test_without_the_token_401_and_nothing_changes(
    harness: Harness, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    status, body, resp = await harness.post(token=None, **headers)
    assert status == 401 and "bearer token" in body["error"]
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert unchanged(harness)
    assert 'code="401"' in harness.controller.metrics.render().decode()


async def test_the_token_is_checked_before_the_body_is_looked_at(harness: Harness) -> None:
    status, _, _ = await harness.post(b"x" * (MAX_ALERT_BODY + 10), token="wrong")
    assert status == 401
    status, _, _ = await harness.post(b"{not json", token="wrong")
    assert status == 401


async def test_the_token_file_is_read_on_each_request(harness: Harness, tmp_path: Path) -> None:
    (tmp_path / "token").write_text("rotated")
    assert (await harness.post())[0] == 401
    assert (await harness.post(token="rotated"))[0] == 200


async def test_an_unreadable_or_empty_token_file_refuses_everyone(
    harness: Harness, tmp_path: Path
) -> None:
    (tmp_path / "token").write_text("  \n")
    status, body, _ = await harness.post(token="")
    assert status == 503 and "token file" in body["error"]
    (tmp_path / "token").unlink()
    assert (await harness.post())[0] == 503
    assert unchanged(harness)


async def test_receiver_off_without_a_token_file(harness: Harness) -> None:
    harness.controller.options.alerts_token_file = None
    status, body, _ = await harness.post()
    assert status == 404 and "--alerts-token-file" in body["error"]
    assert unchanged(harness)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{", "not valid JSON"),
        (b"", "not valid JSON"),
        (b'"alerts"', "Input should be an object"),
        ({**NOTIFICATION, "version": "3"}, "version: Input should be '4'"),
        ({**NOTIFICATION, "alerts": [{"labels": {}}]}, "alerts.0.status: Field required"),
    ],
)
async def test_malformed_400_with_the_reason(harness: Harness, body: Any, reason: str) -> None:
    status, answer, _ = await harness.post(body)
    assert status == 400 and reason in answer["error"], answer
    assert answer["error"].startswith("not an Alertmanager webhook notification (version 4)")
    assert unchanged(harness)


async def test_a_body_over_the_limit_is_413(harness: Harness) -> None:
    big = {**NOTIFICATION, "commonAnnotations": {"x": "y" * MAX_ALERT_BODY}}
    status, body, _ = await harness.post(big)
    assert status == 413 and "exceeds" in body["error"]

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the limit still holds
        for _ in range(MAX_ALERT_BODY // 65536 + 2):
            yield b" " * 65536

    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with harness.session.post(harness.url, data=chunks(), headers=headers) as resp:
        assert resp.status == 413
    assert unchanged(harness)


async def test_a_follower_answers_503_and_closes_the_connection(harness: Harness) -> None:
    harness.controller.leader = False
    status, body, resp = await harness.post()
    assert status == 503 and "not the leader" in body["error"] and "ptc-1" in body["error"]
    assert resp.headers.get("Connection", "").lower() == "close"
    assert unchanged(harness)


async def test_leadership_lost_during_delivery_is_503(harness: Harness) -> None:
    harness.reconciler.answer = NotLeader("fenced")
    status, body, _ = await harness.post()
    assert status == 503 and "not the leader" in body["error"]


async def test_a_waiting_command_asks_alertmanager_to_retry(harness: Harness) -> None:
    harness.reconciler.answer = Delivery.BUSY
    status, body, _ = await harness.post()
    assert status == 503 and body["retry"] and body["results"][0]["outcome"] == "busy"


async def test_a_duplicate_is_answered_200_without_an_event(harness: Harness) -> None:
    harness.reconciler.answer = Delivery.DUPLICATE
    status, body, _ = await harness.post()
    assert status == 200 and body["results"][0]["outcome"] == "duplicate"
    assert not harness.reconciler.events


async def test_resolved_alerts_are_recorded_only(harness: Harness) -> None:
    resolved = {
        **NOTIFICATION,
        "status": "resolved",
        "alerts": [
            {**NOTIFICATION["alerts"][0], "status": "resolved", "endsAt": "2026-11-27T12:09:00Z"}
        ],
    }
    status, body, _ = await harness.post(resolved)
    assert status == 200 and body["results"][0]["outcome"] == "resolved"
    assert not harness.reconciler.commands
    [(kind, reason, message)] = harness.reconciler.events
    assert (kind, reason) == ("Normal", "AlertResolved")
    assert "ZaiProxyCanaryBadGateway" in message and "resolved at 2026-11-27T12:09:00Z" in message


async def test_a_rollout_not_in_flight_records_the_firing_alert(harness: Harness) -> None:
    harness.reconciler.phase = Phase.COMPLETED
    status, body, _ = await harness.post()
    assert status == 200 and body["results"][0]["outcome"] == "recorded"
    assert not harness.reconciler.commands
    [(_, reason, message)] = harness.reconciler.events
    assert reason == "AlertNotActedOn" and "completed" in message


async def test_an_alert_no_rollout_matches_is_answered_200(harness: Harness) -> None:
    other = {
        **NOTIFICATION,
        "alerts": [{**NOTIFICATION["alerts"][0], "labels": {"alertname": "DiskFull"}}],
    }
    status, body, _ = await harness.post(other)
    assert status == 200 and body == {"alerts": 1, "results": []}
    assert unchanged(harness)
