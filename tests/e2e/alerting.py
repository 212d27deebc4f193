"""Real alerting for the end-to-end tests: Debian's Alertmanager, and Prometheus with rules.

`AlertmanagerServer` runs ``prometheus-alertmanager`` on a free 127.0.0.1 port (clustering
off, a private data dir) with one webhook receiver; `prometheus_with_rules` is the sandbox's
kind of Prometheus (file_sd over the simulated pods) plus alerting rules and that Alertmanager.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO, Any

import aiohttp
import pytest

from controller.sandbox.podserver import SimulatedPodRuntime
from controller.sandbox.prometheus import (
    FileSDTargets,
    PrometheusServer,
    prometheus_config,
    write_atomic,
)

ALERTMANAGER = "prometheus-alertmanager"  # Debian's name for the binary
INSTALL_HINT = (
    "apt-get install -y --no-install-recommends prometheus-alertmanager (make install-test)"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def require_alertmanager() -> str:
    """The binary's path; fails (not skips: CI must run these) when it is not installed."""
    path = shutil.which(ALERTMANAGER)
    if path is None:
        pytest.fail(f"{ALERTMANAGER} is not installed: {INSTALL_HINT}")
    return path


def alertmanager_config(webhook_url: str, token_file: Path) -> dict[str, Any]:
    """One route to one webhook receiver, grouped per alert name, flushed fast for tests."""
    return {
        "route": {
            "receiver": "ptc",
            "group_by": ["alertname"],
            "group_wait": "100ms",
            "group_interval": "1s",
            "repeat_interval": "1h",
        },
        "receivers": [
            {
                "name": "ptc",
                "webhook_configs": [
                    {
                        "url": webhook_url,
                        "send_resolved": True,
                        "http_config": {
                            "authorization": {"type": "Bearer", "credentials_file": str(token_file)}
                        },
                    }
                ],
            }
        ],
    }


class AlertmanagerServer:
    """The real Alertmanager; `async with` starts it and waits until it is ready."""

    def __init__(self, workdir: Path, config: dict[str, Any]) -> None:
        self.workdir = workdir
        self.config = config
        self.port = 0
        self._proc: asyncio.subprocess.Process | None = None
        self._log: IO[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.workdir / "alertmanager.log"

    async def __aenter__(self) -> AlertmanagerServer:
        binary = require_alertmanager()
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "alertmanager.yml"
        write_atomic(config, json.dumps(self.config, indent=1))
        self.port = free_port()
        self._log = self.log_file.open("ab")
        self._proc = await asyncio.create_subprocess_exec(
            binary,
            f"--config.file={config}",
            f"--storage.path={self.workdir / 'data'}",
            f"--web.listen-address={self.address}",
            "--cluster.listen-address=",  # no gossip port: tests run side by side
            "--log.level=debug",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
        )
        try:
            await self._wait_ready(20.0)
        except BaseException:
            await self.__aexit__()
            raise
        return self

    async def _wait_ready(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as session:
            while loop.time() < deadline:
                assert self._proc is not None
                if self._proc.returncode is not None:
                    break
                try:
                    async with session.get(f"http://{self.address}/-/ready") as resp:
                        if resp.status == 200:
                            return
                except (aiohttp.ClientError, TimeoutError):
                    pass
                await asyncio.sleep(0.05)
        tail = self.log_file.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"Alertmanager did not become ready on {self.address}:\n{tail}")

    async def __aexit__(self, *exc: object) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None


@asynccontextmanager
async def prometheus_with_rules(
    runtime: SimulatedPodRuntime,
    workdir: Path,
    rules: dict[str, Any],
    alertmanager: str,
    *,
    interval: float = 1.0,
) -> AsyncIterator[PrometheusServer]:
    """Prometheus scraping the sandbox's pods, evaluating `rules`, alerting `alertmanager`."""
    workdir.mkdir(parents=True, exist_ok=True)
    rule_file = workdir / "rules.yml"
    write_atomic(rule_file, json.dumps(rules, indent=1))
    targets = FileSDTargets(workdir / "targets.json", runtime)
    config = prometheus_config(targets.path, scrape_interval=interval, rule_files=[rule_file])
    config["alerting"] = {
        "alertmanagers": [{"static_configs": [{"targets": [alertmanager]}], "timeout": "2s"}]
    }
    config_file = workdir / "prometheus.yml"
    write_atomic(config_file, json.dumps(config, indent=1))
    server = PrometheusServer(config_file, workdir=workdir)
    try:
        await server.start()
        yield server
    finally:
        await server.stop()
        targets.detach()
