"""What the sandbox itself costs at fleet scale, so bench/scale.py measures the controller.

The simulated cluster (API server, deployment controller, kubelet, EndpointSlice controller)
runs in the bench process, in-process and without pod servers (a null pod runtime that still
publishes each pod it starts or stops to the file_sd targets file Prometheus reads, as the real
runtime does: that file is rewritten on every pod event, and building it from every pod each
time was the largest cost of the scale bench's ramp at 1000-2000 rollouts). For each N
it creates N Services with a stable Deployment of one pod and a canary Deployment at 0, waits
until every stable pod is Ready, then scales every canary to 1 (what a rollout's first step
does) and waits for those pods. Printed: CPU seconds of each phase (getrusage).

Usage: python bench/sandbox_cost.py [--quick] [--sizes 100,300,1000] [--no-file-sd]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import machine
from controller.sandbox.apiserver import ApiServer
from controller.sandbox.podserver import PodEndpoint, PodEvent, PodRoster
from controller.sandbox.prometheus import FileSDTargets
from controller.sandbox.scenarios import deployment
from controller.sandbox.workload import NullPodRuntime, Workload

NS = "fleet"


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def settle(condition: Callable[[], bool], limit: float = 900.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not settled after {limit}s")
        await asyncio.sleep(0.5)  # coarse: the check itself reads every Deployment


NO_PROXY: Any = None  # the targets file reads only names, labels and the address


class PublishingRuntime(PodRoster, NullPodRuntime):
    """A null runtime whose pods reach the file_sd targets as the real runtime's do."""

    def __init__(self) -> None:
        PodRoster.__init__(self)
        NullPodRuntime.__init__(self)

    async def start_pod(self, pod: dict[str, Any], deployment: str) -> str:
        ip = await super().start_pod(pod, deployment)
        meta = pod["metadata"]
        endpoint = PodEndpoint(
            meta["namespace"],
            meta["name"],
            deployment,
            ip,
            8080,
            meta.get("labels") or {},
            NO_PROXY,
            pod,
        )
        self._by_name[(meta["namespace"], meta["name"])] = endpoint
        self._notify(PodEvent("started", endpoint))
        return ip

    async def stop_pod(self, namespace: str, name: str) -> None:
        await super().stop_pod(namespace, name)
        endpoint = self._by_name.pop((namespace, name), None)
        if endpoint is not None:
            self._notify(PodEvent("stopped", endpoint))


def all_ready(api: ApiServer, names: list[str]) -> Callable[[], bool]:
    def check() -> bool:
        return all(
            (api.get("deployments", name, NS).get("status") or {}).get("readyReplicas", 0) == 1
            for name in names
        )

    return check


async def measure(n: int, file_sd: bool) -> tuple[float, float]:
    api = ApiServer(seed=1)
    runtime = PublishingRuntime() if file_sd else NullPodRuntime()
    workload = Workload(api.registry, runtime, ready_delay=0.0, termination_grace=0.0)
    await workload.start()
    tmp = tempfile.TemporaryDirectory(prefix="ptc-sandbox-cost-")
    if isinstance(runtime, PublishingRuntime):
        FileSDTargets(Path(tmp.name) / "targets.json", runtime)
    try:
        c0 = cpu()
        for i in range(n):
            api.create(
                {
                    "apiVersion": "v1",
                    "kind": "Service",
                    "metadata": {"name": f"svc-{i}", "namespace": NS},
                    "spec": {
                        "selector": {"app": f"app-{i}"},
                        "ports": [{"name": "http", "port": 8080, "targetPort": 8080}],
                    },
                }
            )
            api.create(deployment(f"app-{i}", NS, {"app": f"app-{i}"}, 1, "img:1", {}))
            labels = {"app": f"app-{i}", "version": "v2"}
            api.create(deployment(f"app-{i}-v2", NS, labels, 0, "img:2", {}))
        await settle(all_ready(api, [f"app-{i}" for i in range(n)]))
        c1 = cpu()
        for i in range(n):
            api.patch("deployments", f"app-{i}-v2", {"spec": {"replicas": 1}}, namespace=NS)
        await settle(all_ready(api, [f"app-{i}-v2" for i in range(n)]))
        return c1 - c0, cpu() - c1
    finally:
        await workload.stop()
        tmp.cleanup()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[100, 300, 1000]
    )
    parser.add_argument("--quick", action="store_true", help="sizes 100,300")
    parser.add_argument(
        "--no-file-sd", action="store_true", help="leave out the Prometheus targets file"
    )
    args = parser.parse_args()
    if args.quick:
        args.sizes = [100, 300]
    print(f"machine: {machine()}")
    print(f"file_sd targets: {'no' if args.no_file_sd else 'yes'}")
    for n in args.sizes:
        up, canaries = asyncio.run(measure(n, not args.no_file_sd))
        print(
            f"N={n}: fleet up {up:.2f} CPU s ({up / n * 1000:.1f} ms/Service), "
            f"{n} canaries to 1 pod {canaries:.2f} CPU s ({canaries / n * 1000:.1f} ms each)",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
