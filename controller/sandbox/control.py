"""A small HTTP control endpoint for `ptc sandbox` users: status, faults, traffic rate.

GET  /status                  where everything is, traffic counters (incl. requests dropped by
                              exiting pods: refused/reset), pods and their limits
POST /faults   {"namespace", "deployment", <fields>?}  change what the upstream answers a
               Deployment's attempts (omitted fields kept). Probabilities per upstream attempt
               (`controller.sandbox.faults`): "error502", "error500", "upstream429" (429 without
               a business code), "frequency429" (1303), "concurrency429" (1302), "quota429"
               (1308), "dropped", "truncated"; "retryAfter" (whole seconds, null for none);
               "latencyMedian", "latencyP95" (seconds, upstream 200s)
DELETE /faults?namespace=&deployment=   back to no faults
POST /traffic  {"rate": 50}   requests/s through the Service
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from controller.httpserve import serve
from controller.sandbox.faults import JSON_FIELDS, Latency

if TYPE_CHECKING:
    from controller.sandbox.world import Sandbox


def _bad(message: str) -> web.Response:
    return web.json_response({"error": message}, status=400)


class ControlServer:
    """aiohttp server on 127.0.0.1 bound to one Sandbox."""

    def __init__(self, sandbox: Sandbox, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sandbox = sandbox
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """Base URL of the control endpoint."""
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        """Serve on host:port (port 0 picks a free one)."""
        app = web.Application()
        app.router.add_get("/status", self._status)
        app.router.add_post("/faults", self._set_faults)
        app.router.add_delete("/faults", self._clear_faults)
        app.router.add_post("/traffic", self._traffic)
        self._runner, self.port = await serve(app, self.host, self.port)

    async def stop(self) -> None:
        """Stop serving."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _status(self, request: web.Request) -> web.Response:
        return web.json_response(self.sandbox.status())

    async def _json(self, request: web.Request) -> dict[str, Any] | web.Response:
        try:
            body = await request.json()
        except ValueError:
            return _bad("expected a JSON object")
        if not isinstance(body, dict):
            return _bad("expected a JSON object")
        return body

    async def _set_faults(self, request: web.Request) -> web.Response:
        body = await self._json(request)
        if isinstance(body, web.Response):
            return body
        namespace, deployment = body.get("namespace"), body.get("deployment")
        if not isinstance(namespace, str) or not isinstance(deployment, str):
            return _bad("namespace and deployment (strings) are required")
        known = {"namespace", "deployment", "latencyMedian", "latencyP95", *JSON_FIELDS}
        unknown = sorted(set(body) - known)
        if unknown:
            return _bad(f"unknown fields {unknown}; known: {sorted(known)}")
        current = self.sandbox.faults.get(namespace, deployment)
        changes: dict[str, Any] = {}
        try:
            for key, name in JSON_FIELDS.items():
                if key not in body:
                    continue
                value = body[key]
                if name == "retry_after":
                    changes[name] = value  # FaultProfile checks it: a positive int or null
                elif isinstance(value, bool) or not isinstance(value, int | float):
                    return _bad(f"{key} must be a number (a probability), got {value!r}")
                else:
                    changes[name] = float(value)
            if "latencyMedian" in body or "latencyP95" in body:
                changes["latency"] = Latency(
                    median=float(body.get("latencyMedian", current.latency.median)),
                    p95=float(body.get("latencyP95", current.latency.p95)),
                )
            profile = self.sandbox.faults.update(namespace, deployment, **changes)
        except (TypeError, ValueError) as exc:
            return _bad(str(exc))
        return web.json_response(
            {"namespace": namespace, "deployment": deployment, **profile.as_json()}
        )

    async def _clear_faults(self, request: web.Request) -> web.Response:
        namespace = request.query.get("namespace")
        deployment = request.query.get("deployment")
        if not namespace or not deployment:
            return _bad("namespace and deployment query parameters are required")
        self.sandbox.faults.clear(namespace, deployment)
        return web.json_response({"cleared": f"{namespace}/{deployment}"})

    async def _traffic(self, request: web.Request) -> web.Response:
        body = await self._json(request)
        if isinstance(body, web.Response):
            return body
        try:
            self.sandbox.traffic.rate = float(body["rate"])
        except (KeyError, TypeError, ValueError) as exc:
            return _bad(f"expected {{'rate': <requests per second >= 0>}}: {exc}")
        return web.json_response({"rate": self.sandbox.traffic.rate})
