"""Serving an aiohttp application on host:port, where port 0 means "pick a free one"."""

from __future__ import annotations

from aiohttp import web


async def serve(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Start `app`; the runner (for cleanup) and the port it really listens on."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner, int(runner.addresses[0][1]) if port == 0 else port
