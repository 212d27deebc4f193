"""`ptc run`: informers per namespace, one reconciler task per rollout, the HTTP server.

Shutdown (SIGTERM/SIGINT): every reconciler finishes the action in flight, then the analysis
runners, informers and the server stop; the process exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog

from controller.analysis.prometheus import PrometheusProvider
from controller.analysis.provider import Provider
from controller.config.model import Config
from controller.kube import Kube
from controller.metrics import Metrics
from controller.reconciler import Caches, RolloutReconciler
from controller.server import Server

log = structlog.get_logger("ptc.daemon")

KINDS = ("pods", "deployments", "services", "endpointslices")
SYNC_TIMEOUT = 60.0
STOP_GRACE = 20.0


@dataclass
class DaemonOptions:
    """How `ptc run` runs."""

    kubeconfig: str | None = None
    listen_host: str = "0.0.0.0"
    listen_port: int = 8080
    identity: str = field(default_factory=socket.gethostname)
    namespaces: tuple[str, ...] = ()  # only these (default: every namespace a rollout names)
    config_source: str = ""


class Controller:
    """Everything `ptc run` starts; `run()` until `stop()`."""

    def __init__(
        self,
        config: Config,
        options: DaemonOptions,
        *,
        provider_factory: Callable[[Config], Provider | None] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.config = config
        self.options = options
        self.clock = clock
        self.metrics = Metrics()
        self.metrics.leader.set(1)
        self.metrics.config_generation.set(1)
        self._provider_factory = provider_factory or (lambda c: PrometheusProvider(c.prometheus))
        self.provider: Provider | None = None
        self.kube: Kube | None = None
        self.reconcilers: list[RolloutReconciler] = []
        self.caches: dict[str, Caches] = {}
        self.server = Server(self, options.listen_host, options.listen_port)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.ready = False

    def rollouts(self) -> list[dict[str, Any]]:
        """Status of every rollout (for /api/v1/rollouts)."""
        return [r.status() for r in self.reconcilers]

    def readiness(self) -> tuple[bool, list[str]]:
        """Ready once every informer has synced; the reasons when not."""
        reasons = []
        if self.kube is None:
            reasons.append("not connected to the Kubernetes API")
        for ns, caches in self.caches.items():
            for kind in KINDS:
                if not getattr(caches, kind).synced:
                    reasons.append(f"{kind} in {ns} not synced")
        return (not reasons and self.ready), reasons

    def stop(self) -> None:
        """Begin a clean shutdown."""
        self._stop.set()

    async def run(self) -> None:
        """Connect, sync, reconcile until stopped, then shut down cleanly."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.stop)
        await self.server.start()
        try:
            await self._start()
            await self._stop.wait()
        finally:
            await self._shutdown()
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(sig)

    async def _start(self) -> None:
        self.kube = await Kube.connect(self.options.kubeconfig, instance=self.options.identity)
        self.provider = self._provider_factory(self.config)
        rollouts = [
            r
            for r in self.config.rollouts
            if not self.options.namespaces or r.namespace in self.options.namespaces
        ]
        for ns in sorted({r.namespace for r in rollouts}):
            caches = Caches(
                self.kube.informer("pods", ns),
                self.kube.informer("deployments", ns),
                self.kube.informer("services", ns),
                self.kube.informer("endpointslices", ns),
            )
            self.caches[ns] = caches
        for spec in rollouts:
            reconciler = RolloutReconciler(
                spec,
                self.kube,
                self.caches[spec.namespace],
                self.provider,
                self.metrics,
                identity=self.options.identity,
                clock=self.clock,
            )
            self.reconcilers.append(reconciler)
        for ns, caches in self.caches.items():
            for kind in KINDS:
                informer = getattr(caches, kind)
                informer.subscribe(self._router(ns, kind))
                await informer.start()
        for caches in self.caches.values():
            for kind in KINDS:
                await getattr(caches, kind).wait_synced(SYNC_TIMEOUT)
        self.ready = True
        log.info(
            "controller started",
            rollouts=[r.spec.name for r in self.reconcilers],
            namespaces=sorted(self.caches),
            identity=self.options.identity,
            config=self.options.config_source,
        )
        for reconciler in self.reconcilers:
            task = asyncio.create_task(reconciler.run(), name=f"reconcile:{reconciler.spec.name}")
            task.add_done_callback(self._reconciler_ended)
            self._tasks.append(task)

    def _router(self, namespace: str, kind: str) -> Callable[[str, Any], None]:
        def route(event_type: str, obj: Any) -> None:
            for reconciler in self.reconcilers:
                if reconciler.spec.namespace == namespace and reconciler.interested(kind, obj):
                    reconciler.on_event(kind, event_type, obj)

        return route

    def _reconciler_ended(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or self._stop.is_set():
            return
        exc = task.exception()
        if exc is not None:
            # A reconciler must never die silently: say why, then stop the process so the
            # Deployment restarts it (the state in the cluster lets the new one resume).
            log.error(
                "reconciler crashed; stopping", task=task.get_name(), error=repr(exc), exc_info=exc
            )
            self.stop()

    async def _shutdown(self) -> None:
        self.ready = False
        for reconciler in self.reconcilers:
            reconciler.stop()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=STOP_GRACE)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self.provider is not None:
            await self.provider.close()
        if self.kube is not None:
            await self.kube.close()
        await self.server.stop()
        log.info("controller stopped")
