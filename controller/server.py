"""The controller's HTTP server: /healthz, /readyz, /metrics, /api/v1/rollouts."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from controller.httpserve import serve
from controller.metrics import CONTENT_TYPE

if TYPE_CHECKING:
    from controller.daemon import Controller


class Server:
    """aiohttp server bound to one Controller."""

    def __init__(self, controller: Controller, host: str, port: int) -> None:
        self.controller = controller
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """Base URL (after start)."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        """Listen (port 0: a free port, readable from `port` afterwards)."""
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/api/v1/rollouts", self._rollouts)
        app.router.add_get("/api/v1/rollouts/{name}", self._rollout)
        self._runner, self.port = await serve(app, self.host, self.port)

    async def stop(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _healthz(self, request: web.Request) -> web.Response:
        # Answering at all proves the event loop is not stuck.
        return web.Response(text="ok\n")

    async def _readyz(self, request: web.Request) -> web.Response:
        ready, reasons = self.controller.readiness()
        body = {
            "ready": ready,
            "reasons": reasons,
            "identity": self.controller.options.identity,
            "leader": self.controller.is_leader(),
            "rollouts": len(self.controller.reconcilers),
            "configGeneration": self.controller.generation,
            "lastReloadError": self.controller.last_reload_error,
        }
        return web.json_response(body, status=200 if ready else 503)

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(
            body=self.controller.metrics.render(), headers={"Content-Type": CONTENT_TYPE}
        )

    async def _rollouts(self, request: web.Request) -> web.Response:
        return web.json_response({"rollouts": self.controller.rollouts()})

    async def _rollout(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        for status in self.controller.rollouts():
            if status["name"] == name:
                return web.json_response(status)
        return web.json_response({"error": f"no rollout named {name!r}"}, status=404)
