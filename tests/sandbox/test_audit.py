"""The sandbox API server's write audit and write gate, over raw HTTP."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import aiohttp
import pytest

from controller.sandbox.apiaccess import rule
from controller.sandbox.apiserver import ApiServer
from controller.sandbox.audit import precondition
from tests.sandbox.conftest import service

SERVICES = "/api/v1/namespaces/default/services"
MERGE = {"Content-Type": "application/merge-patch+json"}


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _call(
    session: aiohttp.ClientSession, method: str, path: str, body: Any, headers: dict[str, str]
) -> int:
    async with session.request(method, path, data=json.dumps(body), headers=headers) as resp:
        await resp.read()
        return resp.status


async def test_every_decided_write_is_audited_with_its_sender_code_and_order(
    api_server: ApiServer,
) -> None:
    api_server.add_token("ta", "ctl-a")
    api_server.add_token("tb", "ctl-b")
    async with aiohttp.ClientSession(base_url=api_server.url) as s:
        assert await _call(s, "POST", SERVICES, service("web"), _auth("ta")) == 201
        rv = api_server.get("services", "web")["metadata"]["resourceVersion"]
        stale = {"metadata": {"resourceVersion": rv, "annotations": {"x": "b"}}}
        assert await _call(s, "PATCH", f"{SERVICES}/web", stale, {**MERGE, **_auth("tb")}) == 200
        # the same precondition again: the object moved on, so 409, audited as not applied
        stale["metadata"]["annotations"] = {"x": "a"}
        assert await _call(s, "PATCH", f"{SERVICES}/web", stale, {**MERGE, **_auth("ta")}) == 409
        async with s.get(f"{SERVICES}/web", headers=_auth("ta")) as resp:
            assert resp.status == 200  # reads are not audited
    entries = api_server.audit.entries
    assert [(e.seq, e.user, e.verb, e.resource, e.name, e.code) for e in entries] == [
        (1, "ctl-a", "create", "services", None, 201),
        (2, "ctl-b", "patch", "services", "web", 200),
        (3, "ctl-a", "patch", "services", "web", 409),
    ]
    assert [e.applied for e in entries] == [True, True, False]
    assert entries[0].resource_version is not None and entries[1].resource_version is not None
    assert entries[0].resource_version < entries[1].resource_version
    assert entries[2].resource_version is None
    assert [e.seq for e in api_server.audit.writes(user="ctl-a")] == [1, 3]
    # what each write was conditioned on: a create on nothing, each patch on the version it saw
    assert [e.condition for e in entries] == [None] + [f"resourceVersion={rv}"] * 2


@pytest.mark.parametrize(
    ("verb", "body", "condition"),
    [
        ("patch", {"metadata": {"resourceVersion": "7", "annotations": {}}}, "resourceVersion=7"),
        ("patch", {"metadata": {"annotations": {"a": "b"}}}, None),  # a blind patch
        ("patch", {"spec": {"replicas": 3}}, None),
        ("update", {"metadata": {"resourceVersion": "9"}, "spec": {}}, "resourceVersion=9"),
        ("update", {"metadata": {"uid": "u-1"}}, "uid=u-1"),
        ("delete", {"kind": "DeleteOptions", "preconditions": {"uid": "u-1"}}, "uid=u-1"),
        (
            "delete",
            {"preconditions": {"uid": "u-1", "resourceVersion": "3"}},
            "uid=u-1,resourceVersion=3",
        ),
        ("delete", {"propagationPolicy": "Background"}, None),
        ("create", {"metadata": {"name": "x"}}, None),
        ("patch", [{"op": "replace", "path": "/spec/replicas", "value": 1}], None),  # JSON patch
        ("patch", {"metadata": "not an object"}, None),
    ],
)
def test_a_writes_precondition_is_read_from_its_body(
    verb: str, body: object, condition: str | None
) -> None:
    assert precondition(verb, json.dumps(body).encode()) == condition


@pytest.mark.parametrize("raw", [b"", b"   ", b"{not json", b"\xff\xfe"])
def test_a_body_that_is_not_json_has_no_precondition(raw: bytes) -> None:
    assert precondition("patch", raw) is None


async def test_a_held_write_is_applied_on_release_although_its_client_gave_up(
    api_server: ApiServer,
) -> None:
    api_server.add_token("ta", "ctl-a")
    api_server.create(service("web"))
    held = api_server.gate.arm(lambda w: w.user == "ctl-a" and w.verb == "patch")
    patch = {"metadata": {"annotations": {"late": "yes"}}}
    async with aiohttp.ClientSession(base_url=api_server.url) as s:
        sending = asyncio.create_task(
            _call(s, "PATCH", f"{SERVICES}/web", patch, {**MERGE, **_auth("ta")})
        )
        arrival = await held.wait_arrived(10)
        assert (arrival.user, arrival.resource, arrival.name) == ("ctl-a", "services", "web")
        annotations = api_server.get("services", "web")["metadata"].get("annotations")
        assert "late" not in (annotations or {})
        sending.cancel()  # the client gives up and closes its connection
        await asyncio.gather(sending, return_exceptions=True)
    assert api_server.audit.entries == []  # not decided while held
    watch = api_server.store.watch(None, "default", cuttable=False)
    held.release()
    assert await watch.next(10) is not None  # the server finishes what it received
    watch.close()
    (entry,) = api_server.audit.entries
    assert entry.applied and entry.held
    assert api_server.get("services", "web")["metadata"]["annotations"]["late"] == "yes"


async def test_writes_refused_before_handling_are_audited_too(api_server: ApiServer) -> None:
    api_server.add_token("tr", "reader", [rule("", "services", ["get"])])
    api_server.create(service("web"))
    patch = {"metadata": {"annotations": {"x": "y"}}}
    async with aiohttp.ClientSession(base_url=api_server.url) as s:
        assert await _call(s, "PATCH", f"{SERVICES}/web", patch, {**MERGE, **_auth("tr")}) == 403
        api_server.set_faults(error_rate=1.0, error_code=429, verbs=["patch"])
        assert await _call(s, "PATCH", f"{SERVICES}/web", patch, {**MERGE, **_auth("tr")}) == 429
    assert [(e.user, e.code, e.applied) for e in api_server.audit.entries] == [
        ("reader", 403, False),
        ("reader", 429, False),
    ]


async def test_a_watcher_that_went_away_ends_its_watch_without_an_error(
    api_server: ApiServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A killed (or frozen, then given-up) controller drops its watch: no traceback logged."""
    api_server.create(service("web"))
    reader, writer = await asyncio.open_connection(api_server.host, api_server.port)
    writer.write(f"GET {SERVICES}?watch=true HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    assert b"200" in await reader.readline()
    writer.transport.abort()  # the connection is reset, as by a killed process
    caplog.set_level(logging.ERROR)
    for i in range(20):  # events to write to the dead stream
        api_server.patch("services", "web", {"metadata": {"annotations": {"n": str(i)}}})
        await asyncio.sleep(0.01)
    for _ in range(1000):  # the server ends the watch at its first failed write
        if not api_server._watch_requests:
            break
        await asyncio.sleep(0.01)
    assert not api_server._watch_requests
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
