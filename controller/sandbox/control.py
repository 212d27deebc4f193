"""A small HTTP control endpoint for `ptc sandbox` users: status, faults, traffic rate.

GET  /status                  where everything is, traffic counters (incl. requests dropped by
                              exiting pods: refused/reset), pods and their limits
POST /faults   {"namespace", "deployment", "error502"?, "upstream429"?, "latencyMedian"?,
                "latencyP95"?}  change a Deployment's fault profile (omitted fields kept)
DELETE /faults?namespace=&deployment=   back to no faults
POST /traffic  {"rate": 50}   requests/s through the Service
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from controller.httpserve import serve
from controller.sandbox.faults import Latency

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
        current = self.sandbox.faults.get(namespace, deployment)
        changes: dict[str, Any] = {}
        try:
            if "error502" in body:
                changes["error_502"] = float(body["error502"])
            if "upstream429" in body:
                changes["upstream_429"] = float(body["upstream429"])
            if "latencyMedian" in body or "latencyP95" in body:
                changes["latency"] = Latency(
                    median=float(body.get("latencyMedian", current.latency.median)),
                    p95=float(body.get("latencyP95", current.latency.p95)),
                )
            profile = self.sandbox.faults.update(namespace, deployment, **changes)
        except (TypeError, ValueError) as exc:
            return _bad(str(exc))
        return web.json_response(
            {
                "namespace": namespace,
                "deployment": deployment,
                "error502": profile.error_502,
                "upstream429": profile.upstream_429,
                "latencyMedian": profile.latency.median,
                "latencyP95": profile.latency.p95,
            }
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
