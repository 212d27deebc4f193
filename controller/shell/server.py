"""The controller's HTTP server: /healthz, /readyz, /metrics, /api/v1/rollouts, /api/v1/alerts.

``POST /api/v1/alerts`` is an Alertmanager webhook receiver (README "Alertmanager"): bearer
token from a mounted file, compared in constant time (401 without it, before the body is
read); a body limit (413); malformed JSON or not a version-4 notification: 400 with the reason;
a follower: 503 with ``Connection: close`` so Alertmanager's retry opens a new connection, which
the Service may send to the leader.
"""

from __future__ import annotations

import asyncio
import hmac
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web

from controller.core.alerts.payload import PayloadError, parse_notification
from controller.httpserve import serve
from controller.shell.alertmanager.receiver import receive
from controller.shell.lag import fleet_lag
from controller.shell.metrics import CONTENT_TYPE

if TYPE_CHECKING:
    from controller.shell.daemon import Controller

log = structlog.get_logger("ptc.server")

ALERTS_PATH = "/api/v1/alerts"
MAX_ALERT_BODY = 1024 * 1024  # bytes; Alertmanager's notifications are a few KiB per alert
BODY_TIMEOUT = 10.0  # seconds to receive a body: a client trickling one is cut off
TOKEN_MAX = 4096  # bytes read from the token file


class Server:
    """aiohttp server bound to one Controller."""

    def __init__(self, controller: Controller, host: str, port: int) -> None:
        self.controller = controller
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None
        self._alerts_lock = asyncio.Lock()  # one notification at a time: no racing writes

    @property
    def url(self) -> str:
        """Base URL (after start)."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        """Listen (port 0: a free port, readable from `port` afterwards)."""
        app = web.Application(client_max_size=MAX_ALERT_BODY)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/api/v1/rollouts", self._rollouts)
        app.router.add_get("/api/v1/rollouts/{name}", self._rollout)
        app.router.add_post(ALERTS_PATH, self._alerts)
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
            # Not a reason to be unready (another replica would lag the same): a sign to shard.
            "lag": fleet_lag(
                (f"{r.spec.namespace}/{r.spec.name}", r.lag.latest)
                for r in self.controller.reconcilers
            ),
        }
        return web.json_response(body, status=200 if ready else 503)

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(
            body=self.controller.metrics.render(), headers={"Content-Type": CONTENT_TYPE}
        )

    async def _rollouts(self, request: web.Request) -> web.Response:
        body: dict[str, Any] = {"rollouts": self.controller.rollouts()}
        shards = self.controller.shards_status()
        if shards is not None:
            body["controller"] = shards
        return web.json_response(body)

    async def _rollout(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        for status in self.controller.rollouts():
            if status["name"] == name:
                return web.json_response(status)
        return web.json_response({"error": f"no rollout named {name!r}"}, status=404)

    # -- the Alertmanager receiver -----------------------------------------------------------

    async def _alerts(self, request: web.Request) -> web.Response:
        response = await self._receive_alerts(request)
        self.controller.metrics.alert_requests.labels(str(response.status)).inc()
        if response.status >= 400:
            log.info("alert webhook refused", status=response.status, peer=request.remote)
        return response

    async def _receive_alerts(self, request: web.Request) -> web.Response:
        path = self.controller.options.alerts_token_file
        if not path:
            return _error(
                404,
                "the Alertmanager receiver is off: start `ptc run` with --alerts-token-file "
                '(README "Alertmanager")',
            )
        token = await asyncio.to_thread(_read_token, path)
        if token is None:
            log.error("alert webhook: the token file cannot be read or is empty", file=path)
            return _error(503, "the receiver's token file cannot be read; try again later")
        if not _authorized(request.headers.get("Authorization", ""), token):
            response = _error(401, "a bearer token is required (Authorization: Bearer ...)")
            response.headers["WWW-Authenticate"] = 'Bearer realm="ptc"'
            return response
        if (request.content_length or 0) > MAX_ALERT_BODY:
            return _error(413, f"the body exceeds {MAX_ALERT_BODY} bytes")
        try:
            async with asyncio.timeout(BODY_TIMEOUT):
                body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _error(413, f"the body exceeds {MAX_ALERT_BODY} bytes")
        except TimeoutError:
            return _error(408, f"the body did not arrive within {BODY_TIMEOUT:g}s")
        try:
            notification = parse_notification(body)
        except PayloadError as exc:
            return _error(400, f"not an Alertmanager webhook notification (version 4): {exc}")
        if not self.controller.is_leader():
            return self._not_leader()
        async with self._alerts_lock:
            receipt = await receive(
                notification, self.controller.reconcilers, self.controller.metrics
            )
        if receipt.not_leader:
            return self._not_leader()
        body_out: dict[str, Any] = {"alerts": len(notification.alerts), "results": receipt.results}
        if receipt.retry:
            body_out["retry"] = receipt.retry
            return web.json_response(body_out, status=503)
        return web.json_response(body_out)

    def _not_leader(self) -> web.Response:
        elector = self.controller.elector
        leader = elector.holder if elector is not None else None
        response = _error(
            503,
            f"this instance ({self.controller.options.identity}) is not the leader "
            f"(the leader is {leader or 'unknown'}); send again",
        )
        # A retry on this keep-alive connection would reach this same follower again.
        response.force_close()
        return response


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _read_token(path: str) -> str | None:
    """The token in the file (surrounding whitespace dropped); None if unreadable or empty."""
    try:
        with Path(path).open("rb") as handle:
            token = handle.read(TOKEN_MAX).decode("utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return token or None


def _authorized(header: str, token: str) -> bool:
    scheme, _, credentials = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(credentials.strip().encode(), token.encode())
