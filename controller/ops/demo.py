"""`ptc demo`: the sandbox, the zai-proxy scenario and the controller, in one process.

Plays two rollouts on the seed's world: v1 -> v2 completes (stages, a capacity hold while v2's
rate limiters warm up, the flip, the bake, v1 scaled to 0 and kept); then v2 -> v3, where v3
starts answering 502s at its second step and is rolled back. A live view shows where each
rollout is; when stdout is not a terminal, one plain line per decision instead.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from controller.core.config.model import Config, Rollout
from controller.core.state import RolloutState, read_state
from controller.ops.status_view import decisions_table, status_table
from controller.sandbox.invariants import InvariantMonitor
from controller.sandbox.rollouts import bad_gateway_ratio, rate_limited_ratio, zai_proxy_rollout
from controller.sandbox.scenarios import NAMESPACE, deployment, wait_ready, zai_proxy_scenario
from controller.sandbox.traffic import TrafficStats
from controller.sandbox.world import Sandbox, SandboxOptions
from controller.sandbox.zaiproxy import ProxyTuning
from controller.shell.daemon import Controller
from controller.shell.options import DaemonOptions
from controller.shell.providers.provider import Provider

SERVICE = "zai-proxy"


@dataclass(frozen=True)
class DemoResult:
    """How the two rollouts ended."""

    first: str
    second: str
    provider: str
    report: Path | None
    violations: int

    @property
    def ok(self) -> bool:
        """The demo showed what it promises."""
        return self.first == "completed" and self.second == "rolled-back" and not self.violations


def _seconds(base: float, speed: float) -> str:
    return f"{max(base / speed, 0.5):.1f}s"


def demo_rollout(
    *, name: str, stable: dict[str, str], canary: dict[str, str], speed: float
) -> dict[str, Any]:
    """The demo's rollout spec: the seed's, with durations shortened by `speed`."""
    return zai_proxy_rollout(
        name=name,
        stable=stable,
        canary=canary,
        steps=[{"weight": w, "hold": _seconds(8, speed)} for w in (25, 50, 75)],
        flip={"bake": _seconds(8, speed)},
        retention={"scaleDownDelay": _seconds(5, speed)},
        analysis={
            "interval": "1s",
            "window": "10s",
            "minRequests": 10,
            "maxHold": "120s",
            "metrics": [
                bad_gateway_ratio(for_=_seconds(3, speed)),
                rate_limited_ratio(for_=_seconds(3, speed)),
            ],
            "capacityGate": {
                "capacity": {"gauge": {"metric": "zai_proxy_rate_limit_requests_per_second"}},
                "demand": {"rate": {"metric": "zai_proxy_requests_total"}},
                "headroom": 1.2,
            },
        },
        rollback={"cooldown": "5s"},
    )


class _View:
    """The live view (terminal) or plain decision lines (pipe)."""

    def __init__(self, controller: Controller, sandbox: Sandbox, out: TextIO, color: bool):
        self.controller = controller
        self.sandbox = sandbox
        self.out = out
        self.live_mode = out.isatty()
        self.console = Console(
            file=out, no_color=not color, highlight=False, force_terminal=self.live_mode or None
        )
        self._seen: set[tuple[str, str, str]] = set()
        self._live: Live | None = None
        self._last_traffic = (time.monotonic(), self.sandbox.traffic.stats.copy())

    def say(self, line: str) -> None:
        if self._live is not None:
            self._live.console.print(line)
        else:
            print(line, file=self.out, flush=True)

    def __enter__(self) -> _View:
        if self.live_mode:
            self._live = Live(console=self.console, auto_refresh=False, transient=True)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)
            self._live = None

    def traffic_table(self) -> Table:
        stats = self.sandbox.traffic.stats
        table = Table(
            title=f"traffic through Service {SERVICE} ({self.sandbox.traffic.rate:g} req/s)",
            title_justify="left",
        )
        for col in ("deployment", "requests", "200", "429", "502", "503", "dropped"):
            table.add_column(col, justify="right" if col != "deployment" else "left")
        dropped = stats.dropped_by_deployment
        for dep in sorted(set(stats.by_deployment) | set(dropped)):
            counts = stats.by_deployment.get(dep, Counter())
            table.add_row(
                dep,
                str(sum(counts.values()) + dropped[dep]),
                *(str(counts.get(c, 0)) for c in (200, 429, 502, 503)),
                str(dropped[dep]),
            )
        return table

    def refresh(self) -> None:
        docs = self.controller.rollouts()
        for doc in docs:
            for d in doc.get("decisions") or ():
                key = (doc["name"], d["at"], d["decision"])
                if key in self._seen:
                    continue
                self._seen.add(key)
                if not self.live_mode:
                    at = (d["at"] or "")[11:19]
                    self.say(f"{at} {doc['name']:<10} {d['decision']:<18} {d['reason']}")
        if self._live is not None:
            now = datetime.now(UTC)
            self._live.update(
                Group(
                    status_table(docs, now),
                    *(decisions_table(d, 6) for d in docs),
                    self.traffic_table(),
                ),
                refresh=True,
            )


async def run_demo(
    *,
    speed: float = 1.0,
    color: bool = True,
    out: TextIO = sys.stdout,
    workdir: Path | None = None,
    prometheus: bool | None = None,
    provider_factory: Callable[[Config], Provider | None] | None = None,
    report_dir: Path | None = None,
    echo_order: str = "random",
) -> DemoResult:
    """Play both rollouts; return how they ended.

    ``echo_order``: when the sandbox delivers a write's watch event relative to the write's
    response (see :mod:`controller.sandbox.echo`); random per write, as on a real cluster.
    """
    tmp = Path(tempfile.mkdtemp(prefix="ptc-demo-")) if workdir is None else workdir
    if report_dir is None:
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        report_dir = Path(tempfile.gettempdir()) / f"ptc-demo-report-{stamp}"
    tmp.mkdir(parents=True, exist_ok=True)
    options = SandboxOptions(
        workdir=tmp / "sandbox",
        ready_delay=max(0.2, 1.0 / speed),
        termination_grace=max(0.2, 0.5 / speed),
        traffic_rate=40,
        prometheus=prometheus,
        scrape_interval=1.0,
        seed=42,
        tuning=ProxyTuning(retry_backoff=0.01),
        echo_order=echo_order,
    )
    started = time.monotonic()
    async with Sandbox(options) as sandbox:
        has_prometheus = sandbox.prometheus is not None
        provider_name = "prometheus (real server on 127.0.0.1)" if has_prometheus else "direct"
        print(
            f"ptc demo: sandbox API {sandbox.api.url}, analysis provider: {provider_name}",
            file=out,
            flush=True,
        )
        await zai_proxy_scenario(
            sandbox,
            # 12 req/s takes step 1's 10 req/s; step 2 (50% of 40 req/s x 1.2 headroom) needs
            # 24, which v2's limiter reaches only after its first 12 s window: a capacity hold.
            canary_rate_limit_initial=12,
            canary_env={"SANDBOX_RATE_LIMIT_WINDOW": "12"},
        )
        config_file = tmp / "config.yaml"
        first = demo_rollout(
            name="zai-proxy",
            stable={"deployment": "zai-proxy"},
            canary={"deployment": "zai-proxy-v2", "version": "v2"},
            speed=speed,
        )
        prom = {"url": sandbox.prometheus.url, "timeout": "2s"} if sandbox.prometheus else {}
        provider = "prometheus" if has_prometheus else "direct"
        first["analysis"]["provider"] = provider
        document = {"prometheus": prom, "rollouts": [first]}
        config_file.write_text(json.dumps(document, indent=2))
        config = Config.model_validate(document)
        assert sandbox.kubeconfig is not None
        controller = Controller(
            config,
            DaemonOptions(
                kubeconfig=str(sandbox.kubeconfig),
                listen_host="127.0.0.1",
                listen_port=0,
                identity="ptc-demo",
                config_source="",
            ),
            provider_factory=provider_factory,
        )
        monitor = InvariantMonitor(sandbox, NAMESPACE, SERVICE, "zai-proxy", "zai-proxy-v2", 4)
        monitor.start()
        sandbox.traffic.reset_stats()  # count from the rollouts' start, not the world's creation
        task = asyncio.create_task(controller.run(), name="demo-controller")
        result_first = result_second = "unknown"
        states: list[tuple[dict[str, Any], RolloutState | None]] = []
        try:
            with _View(controller, sandbox, out, color) as view:
                view.say("rollout 1: zai-proxy v1 -> v2 (v2's limiters start cold at 12 req/s)")
                result_first = await _until(
                    controller, view, ("completed", "rolled-back", "failed", "paused")
                )
                view.say(f"rollout 1 ended: {result_first}")
                states.append((first, _service_state(sandbox)))
                # Rollout 2: v2 -> v3, and v3 goes bad at its second step.
                sandbox.api.create(
                    deployment(
                        "zai-proxy-v3",
                        NAMESPACE,
                        {"app": "zai-proxy", "version": "v3"},
                        0,
                        "ronaldraygun/zai-proxy:1.4.0",
                        {
                            "DEPLOYMENT_VARIANT": "v3",
                            "RATE_LIMIT_INITIAL": "40",
                            "MAX_WORKERS": "50",
                        },
                    )
                )
                await wait_ready(sandbox, NAMESPACE, "zai-proxy-v3", 0)
                second = demo_rollout(
                    name="zai-proxy",
                    stable={"deployment": "zai-proxy-v2", "version": "v2"},
                    canary={"deployment": "zai-proxy-v3", "version": "v3"},
                    speed=speed,
                )
                second["analysis"]["provider"] = provider
                monitor.deployments = {"zai-proxy-v2", "zai-proxy-v3"}
                config_file.write_text(json.dumps({"prometheus": prom, "rollouts": [second]}))
                await controller.reload(str(config_file))
                view.say("rollout 2: zai-proxy v2 -> v3 (v3 will answer 50% 502s at step 2)")
                await _until(controller, view, ("progressing",), step=1, reached=True)
                sandbox.faults.update(NAMESPACE, "zai-proxy-v3", error_502=0.5)
                view.say("injected: 50% 502s on zai-proxy-v3")
                result_second = await _until(
                    controller, view, ("rolled-back", "completed", "failed", "paused")
                )
                view.say(f"rollout 2 ended: {result_second}")
                states.append((second, _service_state(sandbox)))
        finally:
            controller.stop()
            await asyncio.wait_for(task, timeout=30)
            await monitor.stop()
        status = controller.rollouts()
        rollout_traffic = sandbox.traffic.stats.copy()
        elapsed = time.monotonic() - started
        report = await _reports(states, report_dir, out)
        _summary(
            out, status, result_first, result_second, elapsed, monitor, report, rollout_traffic
        )
        result = DemoResult(
            result_first, result_second, provider_name, report, len(monitor.violations)
        )
    if workdir is None:
        shutil.rmtree(tmp, ignore_errors=True)
    return result


async def _until(
    controller: Controller,
    view: _View,
    phases: tuple[str, ...],
    *,
    step: int | None = None,
    reached: bool = False,
    timeout: float = 600.0,
) -> str:
    """Refresh the view until the rollout is in one of `phases` (and at `step`, reached)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        view.refresh()
        docs = controller.rollouts()
        doc = docs[0] if docs else {}
        phase = doc.get("phase")
        hold = doc.get("hold")
        if (
            phase in phases
            and (step is None or doc.get("step") == step)
            and (not reached or hold is not None)
        ):
            view.refresh()
            return str(phase)
        await asyncio.sleep(0.25)
    raise TimeoutError(f"the demo rollout did not reach {phases} within {timeout:g}s")


def _service_state(sandbox: Sandbox) -> RolloutState | None:
    svc = sandbox.api.get("services", SERVICE, NAMESPACE)
    return read_state(svc["metadata"].get("annotations") or {})


async def _reports(
    states: list[tuple[dict[str, Any], RolloutState | None]], report_dir: Path, out: TextIO
) -> Path | None:
    """One timeline report per rollout (HTML), rendered off the event loop, one at a time."""
    from controller.ops.report.output import render_report

    await asyncio.to_thread(report_dir.mkdir, parents=True, exist_ok=True)
    written: list[Path] = []
    for i, (spec, state) in enumerate(states, start=1):
        if state is None:
            continue
        path = report_dir / f"rollout-{i}-{spec['canary']['deployment']}.html"
        rollout = Rollout.model_validate(spec)
        try:
            written.extend(
                await asyncio.to_thread(
                    render_report, state, None, path, rollout=rollout, namespace=NAMESPACE
                )
            )
        except ImportError as exc:  # matplotlib: an extra (ptc[report], part of ptc[sandbox])
            print(f"no reports: {exc}; pip install 'ptc[sandbox]' draws them", file=out)
            break
        except Exception as exc:  # the report is a bonus; the demo's result stands without it
            print(f"report for rollout {i} failed: {exc}", file=out)
    return report_dir if written else None


def _summary(
    out: TextIO,
    status: list[dict[str, Any]],
    first: str,
    second: str,
    elapsed: float,
    monitor: InvariantMonitor,
    report: Path | None,
    traffic: TrafficStats,
) -> None:
    doc = status[0] if status else {}
    rollback = next(
        (d for d in reversed(doc.get("decisions") or []) if d["decision"] == "rollback"), None
    )
    print("", file=out)
    print("summary", file=out)
    print(f"  rollout 1 (zai-proxy v1 -> v2): {first}", file=out)
    print(
        f"  rollout 2 (zai-proxy v2 -> v3): {second}"
        + (f" — {rollback['reason']}" if rollback else ""),
        file=out,
    )
    print(f"  Service selector now: {doc.get('selector')}", file=out)
    print(
        f"  requests dropped by terminating pods: {traffic.dropped} (refused {traffic.refused}, "
        f"reset {traffic.reset}) — the seed's Deployments have no preStop delay; see the "
        "preflight warning and README 'Pod termination and preStop'",
        file=out,
    )
    print(f"  invariant checks: {monitor.checks}, violations: {len(monitor.violations)}", file=out)
    for v in monitor.violations[:5]:
        print(f"    {v}", file=out)
    print(f"  took {elapsed:.0f}s", file=out)
    if report is not None:
        print(f"  timeline reports: {report}/ (open the .html files in a browser)", file=out)
    print("", file=out, flush=True)
