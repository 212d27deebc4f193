"""A watch request answered as the real server streams it: one JSON event per line.

``resourceVersion`` empty or 0: the current objects as ADDED, then every change; otherwise the
changes after that version, or one ERROR event (410 Gone) when it has been compacted away, as the
watch cache reports it (on a 200 stream, not as an HTTP error). Each event leaves only when the
write's echo ordering (:class:`~controller.sandbox.echo.EchoOrdering`) lets it.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from controller.sandbox import apierrors as errors
from controller.sandbox.echo import EchoOrdering
from controller.sandbox.registry import Registry
from controller.sandbox.requestinfo import RequestInfo, int_param
from controller.sandbox.store import Watch

Obj = dict[str, Any]


async def serve_watch(
    request: web.Request,
    info: RequestInfo,
    registry: Registry,
    echo: EchoOrdering,
    watchers: dict[Watch, web.Request],
) -> web.StreamResponse:
    """Stream `info`'s watch until its timeout, the client leaving or the server stopping."""
    q = request.query
    timeout = int_param(q, "timeoutSeconds")
    since_param = q.get("resourceVersion", "")
    initial: list[Obj] = []
    error_event: Obj | None = None
    watch: Watch | None = None
    try:
        if since_param in ("", "0"):
            # list + subscribe with no await in between: nothing can slip through the gap
            initial = registry.list(
                info.rt, info.namespace or None, q.get("labelSelector"), q.get("fieldSelector")
            )["items"]
            watch = registry.watch(
                info.rt,
                info.namespace,
                registry.store.resource_version,
                q.get("labelSelector"),
                q.get("fieldSelector"),
            )
        else:
            if not since_param.isdigit():
                raise errors.bad_request(f"invalid resource version: {since_param!r}")
            watch = registry.watch(
                info.rt,
                info.namespace,
                int(since_param),
                q.get("labelSelector"),
                q.get("fieldSelector"),
            )
    except errors.ApiError as e:
        if e.code != 410:
            raise
        # the watch cache reports expiry as an ERROR event on a 200 stream, not an HTTP error
        error_event = {"type": "ERROR", "object": e.status}
    response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    await response.prepare(request)
    if error_event is not None or watch is None:
        await response.write((json.dumps(error_event) + "\n").encode())
        return response
    watchers[watch] = request
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout if timeout else None
    try:
        for obj in initial:
            await response.write((json.dumps({"type": "ADDED", "object": obj}) + "\n").encode())
        while True:
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                break
            event = await watch.next(remaining)
            if event is None:
                break
            version = int(event[1]["metadata"]["resourceVersion"])
            await echo.gate(version)
            await response.write(
                (json.dumps({"type": event[0], "object": event[1]}) + "\n").encode()
            )
            echo.sent(watch, version)
    except ConnectionResetError:
        pass  # the watcher went away (a killed client): nobody is left to tell
    finally:
        watch.close()
        watchers.pop(watch, None)
        echo.closed()
    return response
