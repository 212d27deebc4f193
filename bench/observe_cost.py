"""What one reconcile's reads of the caches cost when N rollouts share one namespace.

In-process, no sandbox and no controller: real informers over the in-memory cluster of the unit
tests (tests/unit/fake_cluster.py), filled with N rollouts (a Service, a stable and a canary
Deployment of one Ready pod each, one EndpointSlice). For each N it times, in CPU seconds,
`read_observed()` for every rollout (what each reconcile does) and the preflight's
`check_world()` on the pods the reconciler hands it, and counts the cached objects read. Run it
against another checkout (PYTHONPATH=that checkout) to compare: without indexes each read walks
the namespace.

The process CPU clock is used, not wall time, so a busy machine changes the figures little.

Usage: python bench/observe_cost.py [--quick] [--sizes 100,500,1000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import machine, table
from controller.shell import snapshot as snapshot_module
from controller.shell.preflight import check_world
from controller.shell.snapshot import Caches, read_observed
from tests.unit.fake_cluster import (
    FakeCluster,
    caches_for,
    deployment,
    endpoint_slice,
    pod,
    service,
)
from tests.unit.rollout_model import make_spec

KINDS = ("pods", "deployments", "services", "endpointslices")


def fill(cluster: FakeCluster, n: int) -> list[Any]:
    """N rollouts in one namespace; their specs."""
    specs = []
    for i in range(n):
        app = f"app-{i:04d}"
        svc = service({}, {"app": app})
        svc["metadata"]["name"] = f"svc-{i:04d}"
        cluster.commit("services", svc)
        pods = []
        for name, version, net in ((app, "v1", 0), (f"{app}-v2", "v2", 1)):
            dep = deployment(name, version, 1)
            labels = {"app": app, "version": version}
            dep["spec"]["selector"]["matchLabels"] = labels
            dep["spec"]["template"]["metadata"]["labels"] = labels
            cluster.commit("deployments", dep)
            p = pod(name, version, 0, f"10.{net}.{i // 250}.{i % 250 + 1}")
            p["metadata"]["labels"] = {**labels, "pod-template-hash": "abc"}
            cluster.commit("pods", p)
            pods.append(p)
        slice_ = endpoint_slice(pods)
        slice_["metadata"]["name"] = f"svc-{i:04d}-1"
        slice_["metadata"]["labels"] = {"kubernetes.io/service-name": f"svc-{i:04d}"}
        cluster.commit("endpointslices", slice_)
        specs.append(
            make_spec(
                name=f"svc-{i:04d}",
                service=f"svc-{i:04d}",
                sharedSelector={"app": app},
                stable={"deployment": app},
                canary={"deployment": f"{app}-v2", "version": "v2"},
                analysis={"interval": "10s", "metrics": []},
            )
        )
    return specs


def preflight_pods(spec: Any, caches: Caches) -> Any:
    """What the reconciler hands check_world: the indexed pods, or (older code) all of them."""
    indexed = getattr(snapshot_module, "preflight_pods", None)
    if indexed is None:
        return caches.pods.items()
    return indexed(spec, caches, dict(spec.shared_selector))


def objects_read(caches: Caches) -> float:
    """Objects handed to readers so far (NaN on code without the counter)."""
    informers = [getattr(caches, k) for k in KINDS]
    if not all(hasattr(i, "objects_read") for i in informers):
        return math.nan
    return float(sum(i.objects_read for i in informers))


async def measure(n: int, rounds: int) -> dict[str, float]:
    cluster = FakeCluster()
    specs = fill(cluster, n)
    caches = await caches_for(cluster)
    try:
        services = [caches.services.get(s.service) for s in specs]
        best_observe = best_preflight = float("inf")
        read0 = objects_read(caches)
        for _ in range(rounds):
            t0 = time.process_time()
            for spec, svc in zip(specs, services, strict=True):
                assert svc is not None
                read_observed(spec, caches, svc, {}, preflight=None, capacity=None, demand=None)
            t1 = time.process_time()
            for spec in specs:
                check_world(
                    spec,
                    dict(spec.shared_selector),
                    caches.deployments.get(spec.stable.deployment),
                    caches.deployments.get(spec.canary.deployment),
                    preflight_pods(spec, caches),
                )
            t2 = time.process_time()
            best_observe = min(best_observe, (t1 - t0) / n)
            best_preflight = min(best_preflight, (t2 - t1) / n)
        reads = (objects_read(caches) - read0) / (rounds * n)
    finally:
        for kind in KINDS:
            await getattr(caches, kind).stop()
    return {
        "n": n,
        "observe_us": best_observe * 1e6,
        "preflight_us": best_preflight * 1e6,
        "reads": reads,
        # one reconcile per rollout per 10 s analysis interval (the bench/scale.py setup)
        "cores_at_10s": n * best_observe / 10.0,
    }


async def run(args: argparse.Namespace) -> int:
    print(f"machine: {machine()}")
    rows = [await measure(n, args.rounds) for n in args.sizes]
    print(
        table(
            (
                "N rollouts",
                "observe µs/reconcile",
                "preflight µs/run",
                "objects read/(observe+preflight)",
                "observe cores at 1 reconcile/10s each",
            ),
            [
                (
                    int(r["n"]),
                    r["observe_us"],
                    r["preflight_us"],
                    r["reads"],
                    r["cores_at_10s"],
                )
                for r in rows
            ],
        )
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--sizes",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[100, 500, 1000],
        help="rollout counts (100,500,1000)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="best of this many passes (3)")
    parser.add_argument("--quick", action="store_true", help="sizes 100,500; one pass")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.rounds = [100, 500], 1
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
