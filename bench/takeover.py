"""Takeover cost: a new leader claims N rollouts in progress (issue 12, fencing).

One sandbox (no Prometheus, no traffic) holds N Services, each with a stable Deployment of one pod
and a canary at 0 (bench/common.py `create_fleet`). A first `ptc run` (identity `ptc-old`) brings
every rollout to its first step (50 %, a 2 h hold, no metrics) and is stopped (SIGTERM: it
releases the Lease). Then each variant in turn (--variants; default: ptc's claim, then the claim
of the Service only as it was before) is started on the same config and takes over from the one
before; from the sandbox's write audit the bench reports, for each takeover (until every
rollout's state names the new leader as writer): the writes per rollout by kind — the claim's
annotation of each Deployment and of the history ConfigMap, the state write that completes it,
and anything else — and the times from spawn to the first and to the last completed claim. The
controllers share one token, so the audit tells them apart by time: one has exited before the
next starts.

Usage: python bench/takeover.py [--sizes 10,100,300] [--variants "full claim,service-only claim"]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    LoadSampler,
    bench_sandbox,
    controller_kubeconfig,
    controller_process,
    machine,
    table,
    write_config,
)
from bench.fleet import create_fleet, fleet_spec, state_of, wait_fleet_ready
from controller.sandbox.world import Sandbox
from tests.e2e import harness


async def wait_states(sandbox: Sandbox, members: list, check, timeout: float) -> float:  # type: ignore[no-untyped-def,type-arg]
    """Seconds until `check(state)` holds for every member's state (polled every 50 ms)."""
    start = time.monotonic()
    while True:
        pending = [m for m in members if not check(state_of(sandbox, m.namespace, m.service))]
        if not pending:
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"{len(pending)} rollouts not there after {timeout}s")
        await asyncio.sleep(0.05)


def claimed_by(writer: str):  # type: ignore[no-untyped-def]
    return lambda s: s is not None and s.get("writer") == writer


def at_first_step(s: dict | None) -> bool:  # type: ignore[type-arg]
    return s is not None and s.get("writer") == "ptc-old" and s.get("hold") is not None


VARIANTS = {
    # the claim of every object the rollout writes (Deployments, history ConfigMap, Service)
    "full claim": "controller.ops.cli",
    # the claim as it was before: the Service only (the fencing tests' negative control)
    "service-only claim": "tests.e2e.unclaimed_ptc",
}


async def one_size(
    sandbox: Sandbox, work: Path, n: int, variants: list[str]
) -> list[dict[str, object]]:
    members = create_fleet(sandbox, range(n), namespace=f"takeover-{n}")
    await wait_fleet_ready(sandbox, members, 1, timeout=300)
    specs = []
    for m in members:
        spec = fleet_spec(m)
        spec["analysis"]["metrics"] = []
        specs.append(spec)
    config = write_config(work / f"config-{n}.yaml", None, specs)
    kubeconfig = controller_kubeconfig(sandbox)
    async with controller_process(config, kubeconfig, work / f"old-{n}.log", identity="ptc-old"):
        await wait_states(sandbox, members, at_first_step, timeout=60 + n)
    results = []
    for i, variant in enumerate(variants):
        # each variant takes over from the previous one (another writer, every rollout in step)
        identity = f"ptc-new-{i}"
        audit = sandbox.api.audit
        start, spawned = len(audit.entries), time.monotonic()
        async with harness.controller_process(
            config,
            kubeconfig,
            work / f"{identity}-{n}.log",
            identity=identity,
            args=("--log-level", "info"),
            module=VARIANTS[variant],
        ):
            await wait_states(sandbox, members, claimed_by(identity), timeout=60 + n)
            done_at = time.monotonic()
        namespace = members[0].namespace
        entries = [e for e in audit.entries[start:] if e.at <= done_at and e.namespace == namespace]
        claims = [e for e in entries if e.resource == "services" and e.applied]
        kinds = Counter(
            f"{e.verb} {e.resource}" + ("" if e.applied else f" ({e.code})") for e in entries
        )
        results.append(
            {
                "n": n,
                "variant": variant,
                "first": min(e.at for e in claims) - spawned if claims else float("nan"),
                "last": done_at - spawned,
                "kinds": kinds,
                "writes": len(entries),
            }
        )
        print(f"N={n}, {variant}: every rollout claimed {done_at - spawned:.2f}s after spawn")
    return results


async def run(args: argparse.Namespace) -> int:
    print(f"machine: {machine()}")
    loads = LoadSampler(every=2.0)
    loads.start()
    results = []
    with tempfile.TemporaryDirectory(prefix="ptc-bench-takeover-") as tmp:
        work = Path(args.workdir or tmp)
        async with bench_sandbox(work / "sandbox", prometheus=False, traffic_rate=0.0) as sandbox:
            for n in sorted(args.sizes):
                results += await one_size(sandbox, work, n, args.variants)
    load_line = await loads.stop()
    print()
    rows = []
    for r in results:
        n = int(r["n"])  # type: ignore[call-overload]
        kinds: Counter[str] = r["kinds"]  # type: ignore[assignment]
        per = ", ".join(f"{k} {v / n:.2f}" for k, v in sorted(kinds.items()))
        rows.append(
            (
                n,
                r["variant"],
                f"{r['writes'] / n:.2f}",  # type: ignore[operator]
                per,
                f"{r['first']:.2f}",
                f"{r['last']:.2f}",
            )
        )
    print(
        table(
            (
                "rollouts",
                "new leader",
                "writes/rollout",
                "by kind, per rollout",
                "spawn -> first claim (s)",
                "spawn -> all claimed (s)",
            ),
            rows,
        )
    )
    print(load_line)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10,100,300", help="comma-separated rollout counts")
    parser.add_argument("--workdir", default=None, help="keep logs here (default: a temp dir)")
    parser.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help=f"comma-separated, in the order they take over: {', '.join(VARIANTS)}",
    )
    args = parser.parse_args()
    args.sizes = [int(s) for s in args.sizes.split(",")]
    args.variants = args.variants.split(",")
    unknown = set(args.variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants: {sorted(unknown)}")
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
