"""Pod runtime for the sandbox: each simulated zai-proxy pod listens on its own loopback IP.

Satisfies the workload simulator's `PodRuntime` protocol (`start_pod` / `stop_pod`). A pod
gets a random address in 127.64.0.0/10 (random per process, so parallel test processes
rarely collide; on a bind failure another is tried) and an HTTP listener on
`podIP:containerPort` serving what the real binary serves on :8080: `/health`, `/metrics`,
`POST /admin/reset-rate-limit`, and every other path proxied (to the simulated upstream). So
controllers probe `http://podIP:8080/health` and Prometheus scrapes exactly as in a cluster.
The traffic generator does not use HTTP: it resolves pod IPs through `pod_by_ip` and calls the
simulated proxy in-process.

The runtime also keeps the filesystems the proxies' state files live on (`StateFiles`): a
process restarted in its pod (`restart_process`) resumes from a state file on an emptyDir, a
PVC or a hostPath, not from one in its container's own layer.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import json
import logging
import random
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from aiohttp import web

from controller.sandbox.exposition import CONTENT_TYPE
from controller.sandbox.faults import FaultProfiles
from controller.sandbox.ratelimiter import Clock, StateFile, StateFiles
from controller.sandbox.zaiproxy import ProxyConfig, ProxyTuning, SimulatedZaiProxy, go_json

log = logging.getLogger(__name__)

DEFAULT_POD_NETWORK = "127.64.0.0/10"
_BIND_ATTEMPTS = 20
_GONE_KEPT = 1024  # stopped pods remembered by address, to name the pod a refused request hit
_MAX_HTTP_WAIT = 30.0  # an HTTP client of a pod waits at most this long for its simulated answer


@dataclass(frozen=True)
class PodEndpoint:
    """A running simulated pod as the outside world sees it."""

    namespace: str
    name: str
    deployment: str
    ip: str
    port: int
    labels: Mapping[str, str]
    proxy: SimulatedZaiProxy
    pod: Mapping[str, Any]  # the Pod object it was started from
    process: int = 1  # 1 for the first process, +1 per restart

    @property
    def address(self) -> str:
        """`ip:port`, the scrape target."""
        return f"{self.ip}:{self.port}"


@dataclass(frozen=True)
class PodEvent:
    """A pod started serving or stopped serving."""

    kind: Literal["started", "stopped"]
    pod: PodEndpoint


PodListener = Callable[[PodEvent], None]


class PodRuntimeError(RuntimeError):
    """The runtime could not start a pod (e.g. no free address after several attempts)."""


class PodRoster:
    """Running pods by (namespace, name), in start order, and who is told of each start and stop.

    What the file_sd targets (:mod:`controller.sandbox.filesd`) read of a pod runtime; the
    simulated runtime below keeps its pods here, and so do the bench's and the tests' stand-ins.
    """

    def __init__(self) -> None:
        self._by_name: dict[tuple[str, str], PodEndpoint] = {}
        self._listeners: list[PodListener] = []

    def endpoint(self, namespace: str, name: str) -> PodEndpoint | None:
        """A running pod by name."""
        return self._by_name.get((namespace, name))

    def pods(self) -> list[PodEndpoint]:
        """All running pods, in start order."""
        return list(self._by_name.values())

    def add_listener(self, listener: PodListener) -> None:
        """Call `listener` synchronously whenever a pod starts or stops."""
        self._listeners.append(listener)

    def remove_listener(self, listener: PodListener) -> None:
        """Stop calling `listener`."""
        self._listeners.remove(listener)

    def _notify(self, event: PodEvent) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                # A broken observer (e.g. a full disk for file_sd) must not stop pod lifecycle.
                log.exception("pod listener failed for %s %s", event.kind, event.pod.name)


class SimulatedPodRuntime(PodRoster):
    """Starts and stops simulated zai-proxy pods; implements the sandbox `PodRuntime`."""

    def __init__(
        self,
        faults: FaultProfiles | None = None,
        *,
        tuning: ProxyTuning | None = None,
        clock: Clock = time.monotonic,
        seed: int | None = None,
        network: str = DEFAULT_POD_NETWORK,
        shutdown_timeout: float = 1.0,
    ) -> None:
        super().__init__()
        self.faults = faults or FaultProfiles()
        self.tuning = tuning
        self.state_files = StateFiles()
        self._clock = clock
        self._seed = seed
        # Addresses come from a process-local RNG even when `seed` fixes the proxies' behaviour:
        # parallel test processes with the same seed must not pick the same IPs.
        self._ip_rng = random.Random()
        self._network = ipaddress.IPv4Network(network)
        self._shutdown_timeout = shutdown_timeout
        self._runner: web.AppRunner | None = None
        self._sites: dict[str, web.TCPSite] = {}  # by ip
        self._by_ip: dict[str, PodEndpoint] = {}
        self._gone: dict[str, PodEndpoint] = {}  # by ip, oldest first
        self._started: dict[tuple[str, str], int] = {}  # pods started per Deployment

    # -- lifecycle -------------------------------------------------------------------------

    async def _ensure_runner(self) -> web.AppRunner:
        if self._runner is None:
            app = web.Application()
            # As Go's ServeMux routes: exact paths for any method, everything else proxied.
            app.router.add_route("*", "/health", self._health)
            app.router.add_route("*", "/metrics", self._metrics)
            app.router.add_route("*", "/admin/reset-rate-limit", self._reset_rate_limit)
            app.router.add_route("*", "/{path:.*}", self._proxy)
            runner = web.AppRunner(
                app, access_log=None, handle_signals=False, shutdown_timeout=self._shutdown_timeout
            )
            await runner.setup()
            self._runner = runner
        return self._runner

    async def close(self) -> None:
        """Stop every pod and the HTTP runner."""
        for namespace, name in list(self._by_name):
            await self.stop_pod(namespace, name)
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> SimulatedPodRuntime:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- PodRuntime protocol ---------------------------------------------------------------

    async def start_pod(self, pod: dict[str, Any], deployment: str) -> str:
        """Start serving this pod's /health and /metrics on a fresh loopback IP; return it."""
        meta = pod.get("metadata") or {}
        namespace = str(meta.get("namespace") or "default")
        name = str(meta["name"])
        existing = self._by_name.get((namespace, name))
        if existing is not None:
            return existing.ip  # idempotent: the workload may retry a start
        rng = (
            random.Random(self._pod_seed(namespace, deployment)) if self._seed is not None else None
        )
        proxy = self._process(pod, namespace, name, deployment, 1, rng)
        port = proxy.config.port
        ip = await self._bind(port)
        endpoint = PodEndpoint(
            namespace=namespace,
            name=name,
            deployment=deployment,
            ip=ip,
            port=port,
            labels=dict(meta.get("labels") or {}),
            proxy=proxy,
            pod=pod,
        )
        self._by_ip[ip] = endpoint
        self._by_name[(namespace, name)] = endpoint
        self._gone.pop(ip, None)
        self._notify(PodEvent("started", endpoint))
        return ip

    async def stop_pod(self, namespace: str, name: str) -> None:
        """The pod's process exits (zai-proxy does at SIGTERM): later requests are refused."""
        endpoint = self._by_name.pop((namespace, name), None)
        if endpoint is None:
            return
        self._by_ip.pop(endpoint.ip, None)
        self._gone[endpoint.ip] = endpoint
        if len(self._gone) > _GONE_KEPT:
            del self._gone[next(iter(self._gone))]
        site = self._sites.pop(endpoint.ip, None)
        if site is not None:
            await site.stop()
        self._notify(PodEvent("stopped", endpoint))

    def restart_process(self, namespace: str, name: str) -> SimulatedZaiProxy:
        """The pod's zai-proxy process exits and starts again in place (a container restart).

        Its requests in flight are cut off; the new process starts with fresh metrics and a
        limiter at RATE_LIMIT_INITIAL - or at the hold of a state file young enough on a volume
        that outlived the old process.
        """
        old = self._by_name.get((namespace, name))
        if old is None:
            raise KeyError(f"no running pod {namespace}/{name}")
        self._notify(PodEvent("stopped", old))
        rng = (
            random.Random(self._pod_seed(namespace, old.deployment))
            if self._seed is not None
            else None
        )
        proxy = self._process(old.pod, namespace, name, old.deployment, old.process + 1, rng)
        endpoint = replace(old, proxy=proxy, process=old.process + 1)
        self._by_ip[endpoint.ip] = endpoint
        self._by_name[(namespace, name)] = endpoint
        self._notify(PodEvent("started", endpoint))
        return proxy

    def _process(
        self,
        pod: Mapping[str, Any],
        namespace: str,
        name: str,
        deployment: str,
        process: int,
        rng: random.Random | None,
    ) -> SimulatedZaiProxy:
        config = ProxyConfig.from_pod(pod, tuning=self.tuning)
        return SimulatedZaiProxy(
            config,
            namespace=namespace,
            name=name,
            deployment=deployment,
            faults=self.faults,
            clock=self._clock,
            rng=rng,
            state_file=self._state_file(config, namespace, name, process),
        )

    def _state_file(
        self, config: ProxyConfig, namespace: str, name: str, process: int
    ) -> StateFile:
        volume, path = config.state_volume, config.state_file
        if volume[0] == "pvc":
            return self.state_files.file(namespace, *volume, path)
        if volume[0] == "hostPath":
            return self.state_files.file("node", *volume, path)
        if volume[0] == "emptyDir":
            return self.state_files.file(namespace, name, *volume, path)
        return self.state_files.file(namespace, name, "container", str(process), path)

    # -- lookups ---------------------------------------------------------------------------

    def pod_by_ip(self, ip: str) -> SimulatedZaiProxy | None:
        """The simulated proxy serving at `ip`, or None (nothing listens there)."""
        endpoint = self._by_ip.get(ip)
        return endpoint.proxy if endpoint else None

    def pod_at(self, ip: str) -> PodEndpoint | None:
        """The pod serving at `ip`, or the last one that did (recently stopped pods)."""
        return self._by_ip.get(ip) or self._gone.get(ip)

    # -- internals -------------------------------------------------------------------------

    def _pod_seed(self, namespace: str, deployment: str) -> int:
        # By Deployment and start order, not by pod name: names come from the API server's
        # random stream, which every other object created (an Event, a Lease) moves on, and a
        # seeded test's faults must not change with them.
        ordinal = self._started[(namespace, deployment)] = (
            self._started.get((namespace, deployment), 0) + 1
        )
        return (self._seed or 0) ^ zlib.crc32(f"{namespace}/{deployment}/{ordinal}".encode())

    def _random_ip(self) -> str:
        net = self._network
        # Skip the network and broadcast addresses; both are legal on lo but look odd in logs.
        offset = self._ip_rng.randrange(1, net.num_addresses - 1)
        return str(net.network_address + offset)

    async def _bind(self, port: int) -> str:
        runner = await self._ensure_runner()
        last_error: OSError | None = None
        for _ in range(_BIND_ATTEMPTS):
            ip = self._random_ip()
            if ip in self._sites:
                continue
            site = web.TCPSite(runner, ip, port, reuse_address=True)
            try:
                await site.start()
            except OSError as exc:
                # Another process holds that ip:port; the site registered itself with the
                # runner before binding, so unregister it before trying elsewhere.
                last_error = exc
                await site.stop()
                if exc.errno not in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES):
                    raise PodRuntimeError(f"cannot listen on {ip}:{port}: {exc}") from exc
                continue
            self._sites[ip] = site
            return ip
        raise PodRuntimeError(
            f"no free loopback address for port {port} in {self._network} after "
            f"{_BIND_ATTEMPTS} attempts (last error: {last_error})"
        )

    def _serving(self, request: web.Request) -> SimulatedZaiProxy:
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        endpoint = self._by_ip.get(sockname[0]) if sockname else None
        if endpoint is None:
            # The pod is gone but a keep-alive connection survived its listener: drop the
            # connection, as a dead pod's kernel would, instead of answering.
            if request.transport is not None:
                request.transport.close()
            raise web.HTTPServiceUnavailable()
        return endpoint.proxy

    async def _health(self, request: web.Request) -> web.Response:
        proxy = self._serving(request)
        # Exactly Go's header: aiohttp's content_type= would append "; charset=utf-8".
        return web.Response(
            body=go_json(proxy.health()).encode(), headers={"Content-Type": "application/json"}
        )

    async def _reset_rate_limit(self, request: web.Request) -> web.Response:
        proxy = self._serving(request)
        if request.method != "POST":
            return web.Response(status=405, text="method not allowed\n", content_type="text/plain")
        return web.Response(text=go_json(proxy.reset_rate_limit()), content_type="text/plain")

    async def _proxy(self, request: web.Request) -> web.Response:
        """Any other path: proxied to the simulated upstream, answered after its latency."""
        proxy = self._serving(request)
        peer = request.remote or ""
        outcome = proxy.handle(request.method, request.path, client=peer)
        await asyncio.sleep(min(outcome.latency, _MAX_HTTP_WAIT))
        headers = dict(outcome.headers)
        if outcome.body:
            return web.Response(status=outcome.status, text=outcome.body + "\n", headers=headers)
        if outcome.status == 200:
            body: dict[str, Any] = {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "text", "text": "ok"}],
                "usage": {"input_tokens": 8, "output_tokens": 1},
            }
        else:
            code = headers.get("X-Zai-Error-Code")
            body = {"error": {"code": code or str(outcome.status), "message": "simulated"}}
        return web.Response(
            status=outcome.status,
            text=json.dumps(body),
            headers=headers,
            content_type="application/json",
        )

    async def _metrics(self, request: web.Request) -> web.Response:
        proxy = self._serving(request)
        return web.Response(
            body=proxy.render_metrics().encode(), headers={"Content-Type": CONTENT_TYPE}
        )
