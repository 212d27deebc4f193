"""`ptc sandbox`: run a sandbox world until interrupted, printing where everything is."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from pathlib import Path
from typing import TextIO

from controller.sandbox.scenarios import SCENARIOS
from controller.sandbox.world import Sandbox, SandboxOptions


async def serve(
    options: SandboxOptions,
    scenario: str | None,
    *,
    out: TextIO = sys.stdout,
    stop: asyncio.Event | None = None,
) -> None:
    """Start the sandbox (and scenario), print its addresses, run until SIGINT/SIGTERM or `stop`."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        async with Sandbox(options) as sandbox:
            if scenario is not None:
                setup = await SCENARIOS[scenario](sandbox)
                print(
                    f"scenario:    {scenario} (namespace {setup.namespace}, Service "
                    f"{setup.service}, stable {setup.stable}, canary {setup.canary})",
                    file=out,
                )
            status = sandbox.status()
            print(f"kubeconfig:  {status['kubeconfig']}", file=out)
            print(f"api server:  {status['apiServer']}", file=out)
            print(
                f"control:     {status['control'] or 'off'}  (GET /status, POST /faults, "
                "POST /traffic)",
                file=out,
            )
            if status["prometheus"]:
                print(f"prometheus:  {status['prometheus']}", file=out)
            else:
                print(
                    "prometheus:  not installed (apt-get install -y --no-install-recommends "
                    "prometheus) - pods still serve /metrics",
                    file=out,
                )
            print(f"traffic:     {sandbox.traffic.rate:g} req/s", file=out)
            print("ready; Ctrl-C stops the sandbox", file=out, flush=True)
            await stop.wait()
            print("stopping", file=out, flush=True)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)


def options_from_args(
    *,
    workdir: str | None,
    port: int,
    control_port: int,
    rate: float,
    prometheus: bool | None,
    ready_delay: float,
    echo_order: str = "random",
) -> SandboxOptions:
    """SandboxOptions from command-line values."""
    return SandboxOptions(
        workdir=Path(workdir) if workdir else None,
        api_port=port,
        control_port=control_port,
        traffic_rate=rate,
        prometheus=prometheus,
        ready_delay=ready_delay,
        echo_order=echo_order,
    )
