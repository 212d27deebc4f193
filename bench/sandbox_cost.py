"""What the sandbox itself costs at fleet scale, so bench/scale.py measures the controller.

The simulated cluster (API server, deployment controller, kubelet, EndpointSlice controller)
runs in the bench process, in-process and without pod servers (a null pod runtime). For each N
it creates N Services with a stable Deployment of one pod and a canary Deployment at 0, waits
until every stable pod is Ready, then scales every canary to 1 (what a rollout's first step
does) and waits for those pods. Printed: CPU seconds of each phase (getrusage).

Usage: python bench/sandbox_cost.py [--quick] [--sizes 100,300,1000]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import machine
from controller.sandbox.apiserver import ApiServer
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


def all_ready(api: ApiServer, names: list[str]) -> Callable[[], bool]:
    def check() -> bool:
        return all(
            (api.get("deployments", name, NS).get("status") or {}).get("readyReplicas", 0) == 1
            for name in names
        )

    return check


async def measure(n: int) -> tuple[float, float]:
    api = ApiServer(seed=1)
    workload = Workload(api.registry, NullPodRuntime(), ready_delay=0.0, termination_grace=0.0)
    await workload.start()
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


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[100, 300, 1000]
    )
    parser.add_argument("--quick", action="store_true", help="sizes 100,300")
    args = parser.parse_args()
    if args.quick:
        args.sizes = [100, 300]
    print(f"machine: {machine()}")
    for n in args.sizes:
        up, canaries = asyncio.run(measure(n))
        print(
            f"N={n}: fleet up {up:.2f} CPU s ({up / n * 1000:.1f} ms/Service), "
            f"{n} canaries to 1 pod {canaries:.2f} CPU s ({canaries / n * 1000:.1f} ms each)",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
