"""The sandbox world: API server + workload + simulated zai-proxy pods + traffic + Prometheus.

One object composes the pieces the way a cluster does: Deployments become Pods (the workload
simulator), Pods are served on loopback IPs (the pod runtime), the Service's EndpointSlice
routes the traffic generator's requests — as kube-proxy applies it, a moment late
(``endpoint_delay``), so a pod that exits at SIGTERM without a preStop delay drops requests as
on a real cluster — and a real Prometheus (when installed) scrapes the pods through file-based
service discovery. Usage::

    async with Sandbox(SandboxOptions(workdir=tmp)) as sandbox:
        await zai_proxy_scenario(sandbox)
        sandbox.kubeconfig        # for kr8s / ptc
        sandbox.faults.update("devpod", "zai-proxy-v2", error_502=0.2)
        sandbox.traffic.rate = 50
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.sandbox.apiserver import ApiServer
from controller.sandbox.control import ControlServer
from controller.sandbox.faults import FaultProfiles
from controller.sandbox.kubeproxy import EndpointPropagation
from controller.sandbox.podserver import PodEvent, SimulatedPodRuntime
from controller.sandbox.prometheus import PrometheusNotInstalled, PrometheusServer
from controller.sandbox.traffic import TrafficGenerator
from controller.sandbox.workload import Workload
from controller.sandbox.zaiproxy import ProxyTuning


@dataclass
class SandboxOptions:
    """How the sandbox is set up; every field has a default that suits the demo."""

    workdir: Path | None = None  # kubeconfig, Prometheus data; a temp dir by default
    api_port: int = 0  # 0: a free port
    control_port: int | None = 0  # None: no HTTP control endpoint
    ready_delay: float = 1.0  # seconds until a new pod is Ready
    termination_grace: float = 0.5  # seconds from a pod's exit until its object is removed
    # seconds (uniform low..high) until clients see a change of the Service's ready endpoints
    endpoint_delay: tuple[float, float] = (0.05, 0.3)
    traffic_rate: float = 20.0  # requests/s through the Service
    # keep-alive client connections (0: every request balanced on its own; see traffic.py)
    traffic_connections: int = 0
    traffic_service: tuple[str, str] | None = None  # (namespace, service); set by a scenario
    prometheus: bool | None = None  # None: start it if the binary is installed
    scrape_interval: float = 1.0
    seed: int | None = None
    tuning: ProxyTuning = field(default_factory=ProxyTuning)
    # a write's watch echo before, with or after its response: "random" per write, as on a
    # real API server, or one of them forced (see controller.sandbox.echo)
    echo_order: str = "random"


class Sandbox:
    """A running sandbox; start() / stop() or `async with`."""

    def __init__(self, options: SandboxOptions | None = None) -> None:
        self.options = options or SandboxOptions()
        self.faults = FaultProfiles()
        self.api = ApiServer(
            port=self.options.api_port, seed=self.options.seed, echo_order=self.options.echo_order
        )
        self.runtime = SimulatedPodRuntime(
            self.faults, tuning=self.options.tuning, seed=self.options.seed
        )
        self.workload = Workload(
            self.api.registry,
            self.runtime,
            ready_delay=self.options.ready_delay,
            termination_grace=self.options.termination_grace,
        )
        self.kube_proxy = EndpointPropagation(self.options.endpoint_delay, seed=self.options.seed)
        self.traffic = TrafficGenerator(
            self._ready_endpoints,
            self.runtime.pod_by_ip,
            rate=self.options.traffic_rate,
            seed=self.options.seed,
            identify=self.runtime.pod_at,
            connections=self.options.traffic_connections,
        )
        self.runtime.add_listener(self._on_pod_event)
        self.prometheus: PrometheusServer | None = None
        self.control: ControlServer | None = None
        self._own_workdir = self.options.workdir is None
        self._workdir: Path | None = self.options.workdir
        self.kubeconfig: Path | None = None

    @property
    def workdir(self) -> Path:
        """Where the kubeconfig and Prometheus data live."""
        if self._workdir is None:
            raise RuntimeError("sandbox not started")
        return self._workdir

    async def start(self) -> None:
        """Start every part; Prometheus only if asked for or installed."""
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix="ptc-sandbox-"))
        self._workdir.mkdir(parents=True, exist_ok=True)
        await self.api.start()
        self.kubeconfig = self.api.write_kubeconfig(self.workdir / "kubeconfig")
        await self.workload.start()
        want = self.options.prometheus
        if want or (want is None and shutil.which("prometheus")):
            try:
                self.prometheus = PrometheusServer.for_pods(
                    self.runtime,
                    self.workdir / "prometheus",
                    scrape_interval=self.options.scrape_interval,
                )
                await self.prometheus.start()
            except PrometheusNotInstalled:
                if want:
                    raise
                self.prometheus = None
        if self.options.control_port is not None:
            self.control = ControlServer(self, port=self.options.control_port)
            await self.control.start()
        self.traffic.start()

    async def stop(self) -> None:
        """Stop everything in reverse order; safe to call twice."""
        await self.traffic.stop()
        with contextlib.suppress(ValueError):  # already removed by an earlier stop()
            self.runtime.remove_listener(self._on_pod_event)  # shutdown drops no request
        if self.control is not None:
            await self.control.stop()
            self.control = None
        if self.prometheus is not None:
            await self.prometheus.stop()
            self.prometheus = None
        await self.workload.stop()
        await self.runtime.close()
        await self.api.stop()
        if self._own_workdir and self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    async def __aenter__(self) -> Sandbox:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def route_traffic_to(self, namespace: str, service: str) -> None:
        """Send the generator's requests through this Service from now on."""
        self.options.traffic_service = (namespace, service)

    async def endpoints_propagated(self, timeout: float = 5.0) -> None:
        """Wait until the clients route by the Service's current ready endpoints."""
        async with asyncio.timeout(timeout):
            while True:
                self._ready_endpoints()
                at = self.kube_proxy.next_change_at
                if at is None:
                    return
                await asyncio.sleep(max(0.0, at - time.monotonic()))

    def _on_pod_event(self, event: PodEvent) -> None:
        if event.kind == "stopped":
            self.traffic.pod_exited(event.pod)

    def _ready_endpoints(self) -> list[str]:
        # Read the EndpointSlices the way kube-proxy does: Ready endpoints of the Service,
        # applied after the propagation delay.
        return self.kube_proxy.view(self._sliced_endpoints())

    def _sliced_endpoints(self) -> list[str]:
        target = self.options.traffic_service
        if target is None:
            return []
        namespace, service = target
        slices = self.workload.endpoints.slices(namespace, service)
        ips: list[str] = []
        for s in slices:
            for endpoint in s.get("endpoints") or ():
                if (endpoint.get("conditions") or {}).get("ready"):
                    ips.extend(endpoint.get("addresses") or ())
        return ips

    def status(self) -> dict[str, Any]:
        """Where everything is, and what the traffic did so far (JSON-friendly)."""
        stats = self.traffic.stats
        return {
            "apiServer": self.api.url,
            "kubeconfig": str(self.kubeconfig) if self.kubeconfig else None,
            "prometheus": self.prometheus.url if self.prometheus else None,
            "control": self.control.url if self.control else None,
            "echoOrder": {"mode": self.api.echo.mode, **dict(sorted(self.api.echo.counts.items()))},
            "traffic": {
                "service": "/".join(self.options.traffic_service)
                if self.options.traffic_service
                else None,
                "rate": self.traffic.rate,
                "total": stats.total,
                "refused": stats.refused,
                "reset": stats.reset,
                "dropped": stats.dropped,
                "droppedByDeployment": dict(sorted(stats.dropped_by_deployment.items())),
                "endpointDelay": list(self.kube_proxy.delay),
                "byStatus": {str(k): v for k, v in sorted(stats.by_status.items())},
                "byDeployment": {
                    d: {str(k): v for k, v in sorted(c.items())}
                    for d, c in sorted(stats.by_deployment.items())
                },
            },
            "pods": [
                {
                    "namespace": p.namespace,
                    "name": p.name,
                    "deployment": p.deployment,
                    "address": p.address,
                    "rateLimit": round(p.proxy.limiter.current_rate, 3),
                }
                for p in sorted(self.runtime.pods(), key=lambda p: (p.namespace, p.name))
            ],
        }
