"""Alertmanager → ptc, end to end with real components.

A real Prometheus evaluates an alerting rule on the sandbox's zai-proxy metrics, a real
Alertmanager sends the notification to ptc's webhook, and the rollout is rolled back by the next
reconcile, with the alert named in the decision record, the Event and the status API. The
webhook's refusals (no token, malformed, a follower) are checked against the real controller:
they must change nothing.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog

from controller.core.state import STATE_ANNOTATION
from controller.shell.daemon import Controller
from tests.e2e.alerting import AlertmanagerServer, alertmanager_config, prometheus_with_rules
from tests.e2e.harness import (
    CANARY,
    NS,
    STABLE,
    World,
    rollout_spec,
    running_controller,
    sandbox_world,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.prometheus]

TOKEN = "e2e-alert-token-7f3a9c"
ALERT = "ZaiProxyCanaryBadGateway"
CANARY_502_RATIO = (
    'sum by (namespace, version) (rate(zai_proxy_requests_total{{{sel},status_code="502"}}[5s]))'
    " / sum by (namespace, version) (rate(zai_proxy_requests_total{{{sel}}}[5s])) > 0.1"
).format(sel=f'namespace="{NS}",version="v2"')
RULES = {
    "groups": [
        {
            "name": "zai-proxy",
            "interval": "1s",
            "rules": [
                {
                    "alert": ALERT,
                    "expr": CANARY_502_RATIO,
                    "labels": {"severity": "critical"},
                    "annotations": {"summary": "more than 10% 502s on the canary"},
                }
            ],
        }
    ]
}
ROUTES = [
    {
        "matchers": [
            'alertname=~"ZaiProxy.*"',
            'namespace="{{ namespace }}"',
            'version="{{ canary_version }}"',
        ],
        "action": "rollback",
    }
]


def spec_with_alerts() -> dict[str, Any]:
    """In flight for an hour unless something acts: no analysis, only the alert can roll back."""
    return rollout_spec(
        steps=[{"weight": 50, "hold": "1h"}],
        analysis={"interval": "1s", "metrics": []},
        alerts=ROUTES,
    )


@contextmanager
def timed_log() -> Iterator[list[tuple[float, MutableMapping[str, Any]]]]:
    """Every log event with the monotonic time it was logged at."""
    lines: list[tuple[float, MutableMapping[str, Any]]] = []

    def keep(_: Any, __: str, event: MutableMapping[str, Any]) -> Any:
        lines.append((time.monotonic(), event))
        raise structlog.DropEvent

    structlog.configure(processors=[structlog.contextvars.merge_contextvars, keep])
    try:
        yield lines
    finally:
        structlog.reset_defaults()


async def wait_server(ctl: Controller, timeout: float = 30) -> str:
    deadline = asyncio.get_running_loop().time() + timeout
    while not ctl.ready:
        assert asyncio.get_running_loop().time() < deadline, "controller did not start"
        await asyncio.sleep(0.05)
    return ctl.server.url + "/api/v1/alerts"


async def in_flight(world: World) -> dict[str, Any]:
    state = await world.wait_for(
        lambda s: s is not None and s.get("hold") is not None, 90, "step 1 reached"
    )
    assert state is not None
    return state


def event_messages(world: World, reason: str) -> list[str]:
    return [
        str(e.get("message") or e.get("note") or "")
        for e in world.events()
        if e.get("reason") == reason
    ]


async def test_a_real_alert_rolls_the_canary_back_within_one_reconcile(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text(TOKEN)
    with timed_log() as log:
        async with (
            sandbox_world(tmp_path, prometheus=False) as world,
            running_controller(world, spec_with_alerts(), alerts_token_file=str(token)) as ctl,
        ):
            webhook = await wait_server(ctl)
            async with (
                AlertmanagerServer(
                    tmp_path / "alertmanager", alertmanager_config(webhook, token)
                ) as am,
                prometheus_with_rules(
                    world.sandbox.runtime, tmp_path / "prometheus", RULES, am.address
                ) as prom,
            ):
                await in_flight(world)
                await prom.wait_for_data(
                    f'zai_proxy_requests_total{{namespace="{NS}",version="v2"}}', 30
                )
                injected = time.monotonic()
                world.sandbox.faults.update(NS, CANARY, error_502=0.5)
                state = await world.wait_phase("rolled-back", timeout=90)
                rolled_back = time.monotonic()

                # Traffic back on stable, canary out.
                assert world.service()["spec"]["selector"] == {"app": "zai-proxy"}
                assert world.replicas(STABLE) == (4, 4) and world.replicas(CANARY)[0] == 0

                # The alert named in the decision record ...
                [rollback] = [h for h in state["history"] if h["decision"] == "rollback"]
                assert rollback["by"] == f"alert:{ALERT}"
                reason = rollback["reason"]
                assert reason.startswith(f"aborted by alert:{ALERT}: alert {ALERT} {{")
                for part in ('namespace="devpod"', 'severity="critical"', 'version="v2"'):
                    assert part in reason
                # generatorURL: Prometheus' external URL (host name, its port) and the rule's query.
                source = f":{prom.port}/graph?g0.expr=sum+by"
                assert "firing since 20" in reason and source in reason
                # ... in the Event ...
                [started] = event_messages(world, "RollbackStarted")
                assert ALERT in started and source in started
                # ... and in the status API (what `ptc status --controller` shows).
                [doc] = ctl.rollouts()
                assert any(
                    d["by"] == f"alert:{ALERT}" and d["decision"] == "rollback"
                    for d in doc["decisions"]
                )

                # Within one reconcile: the first action after the notification is the rollback.
                # Anchored at the notification's arrival (logged before the command is written):
                # the write's watch echo may wake the reconciler before the write's own answer,
                # so the rollback can be logged before "alert command delivered".
                written = next(
                    i
                    for i, (_, e) in enumerate(log)
                    if e["event"] == "alert command delivered" and e["command"] == "rollback"
                )
                arrived = max(
                    (t, i)
                    for i, (t, e) in enumerate(log[:written])
                    if e["event"] == "alert notification"
                )
                after = [(t, e) for t, e in log[arrived[1] + 1 :] if "action" in e]
                decided_at, first = after[0]
                assert first["event"] == "action taken" and first["decision"] == "rollback", first
                assert first["rollout"] == "zai-proxy", first
                reaction = decided_at - arrived[0]
                assert reaction < 1.0, reaction
                print(
                    f"\n502s injected -> notification {arrived[0] - injected:.2f}s, "
                    f"notification -> rollback decision {reaction * 1000:.0f}ms, "
                    f"-> rolled back {rolled_back - injected:.2f}s"
                )

                # The canary is gone, the alert resolves: recorded, nothing changes.
                history = len(state["history"])
                await world.wait_for(
                    lambda s: bool(event_messages(world, "AlertResolved")), 60, "AlertResolved"
                )
                [resolved] = event_messages(world, "AlertResolved")
                assert ALERT in resolved and "resolved at" in resolved
                after_resolve = world.state()
                assert after_resolve is not None and after_resolve["phase"] == "rolled-back"
                assert len(after_resolve["history"]) == history


async def post(
    session: aiohttp.ClientSession, url: str, body: bytes, token: str | None
) -> tuple[int, dict[str, Any], str]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with session.post(url, data=body, headers=headers) as resp:
        return resp.status, await resp.json(), resp.headers.get("Connection", "")


def notification(status: str = "firing") -> bytes:
    alert = {
        "status": status,
        "labels": {"alertname": ALERT, "namespace": NS, "version": "v2"},
        "annotations": {},
        "startsAt": "2026-11-27T12:00:00Z",
        "endsAt": "2026-11-27T12:05:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus.example/graph",
        "fingerprint": "0011223344556677",
    }
    return json.dumps({"version": "4", "status": status, "alerts": [alert]}).encode()


async def test_the_webhook_changes_nothing_unless_authenticated_well_formed_and_the_leader(
    tmp_path: Path,
) -> None:
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    async with (
        sandbox_world(tmp_path, prometheus=False) as world,
        running_controller(
            world, spec_with_alerts(), identity="leader", alerts_token_file=str(token)
        ) as leader,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
    ):
        url = await wait_server(leader)
        await in_flight(world)
        # The step's Event is written just after the state: let it land.
        await world.wait_for(
            lambda _: bool(event_messages(world, "StepReached")), 30, "StepReached"
        )
        before = world.service()["metadata"]["annotations"]
        events = len(world.events())

        def untouched() -> None:
            assert world.service()["metadata"]["annotations"] == before
            assert len(world.events()) == events

        for bad in (None, "wrong", TOKEN + "x"):
            status, body, _ = await post(session, url, notification(), bad)
            assert status == 401, body
        untouched()
        status, body, _ = await post(session, url, b'{"version": "4", "alerts": [', TOKEN)
        assert status == 400 and "not valid JSON" in body["error"]
        status, body, _ = await post(session, url, b'{"version": "4", "status": "firing"}', TOKEN)
        assert status == 400 and "alerts: Field required" in body["error"]
        untouched()

        # A second controller is the follower: 503, the connection closed, nothing changes.
        async with running_controller(
            world, spec_with_alerts(), identity="standby", alerts_token_file=str(token)
        ) as standby:
            standby_url = await wait_server(standby)
            status, body, connection = await post(session, standby_url, notification(), TOKEN)
            assert status == 503 and "not the leader" in body["error"], body
            assert "leader" in body["error"] and connection.lower() == "close"
            untouched()

        # A resolved alert is recorded only.
        status, body, _ = await post(session, url, notification("resolved"), TOKEN)
        assert status == 200 and body["results"][0]["outcome"] == "resolved", body
        assert (
            world.service()["metadata"]["annotations"][STATE_ANNOTATION] == before[STATE_ANNOTATION]
        )
        assert event_messages(world, "AlertResolved")

        # The leader acts; the same firing sent again (Alertmanager repeats) is a duplicate.
        status, body, _ = await post(session, url, notification(), TOKEN)
        assert status == 200 and body["results"][0]["outcome"] == "rollback", body
        await world.wait_phase("rolling-back", "rolled-back", timeout=30)
        status, body, _ = await post(session, url, notification(), TOKEN)
        assert status == 200 and body["results"][0]["outcome"] in ("duplicate", "recorded"), body
        state = await world.wait_phase("rolled-back", timeout=60)
        assert [h["decision"] for h in state["history"]].count("rollback") == 1
