"""API economy: Kubernetes API requests per completed 4-step rollout, and per idle minute.

The sandbox API server counts requests per (verb, group, resource, user); the controller runs
as a subprocess with its own bearer token (user `ptc-bench-controller`), the bench reads the
sandbox in-process (uncounted). Phases:

1. the seed's zai-proxy world (4 replicas, 60 req/s, real Prometheus) and one rollout with
   4 steps (25/50/75/100 %, 3 s holds, analysis every 1 s), a 3 s bake and a 2 s retention,
   run to `completed`: requests from spawn to /readyz (startup) and from /readyz to completed;
2. idle: a new controller with that completed rollout plus --hold-rollouts rollouts held at
   their first step for 2 h (fleet Services, bench/common.py); once all hold, requests over
   --idle seconds, per minute and per rollout, split by verb and resource.

Usage: python bench/api_economy.py [--quick] [--idle S] [--hold-rollouts K]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    CONTROLLER_USER,
    LoadSampler,
    bench_sandbox,
    controller_kubeconfig,
    controller_process,
    counts_of,
    diff_counts,
    machine,
    split_requests,
    table,
    write_config,
)
from bench.fleet import create_fleet, fleet_spec, state_of, wait_fleet_ready
from controller.sandbox.scenarios import zai_proxy_scenario
from tests.e2e.harness import rollout_spec as harness_rollout

NS, SERVICE = "devpod", "zai-proxy"
Counts = dict[tuple[str, str, str, str], int]


def rollout_spec() -> dict[str, Any]:
    """The tests' rollout (tests/e2e/harness.py) with a fourth step, to 100 %."""
    spec = harness_rollout(steps=[{"weight": w, "hold": "3s"} for w in (25, 50, 75, 100)])
    del spec["rollback"]  # the default cooldown, as this bench has always measured
    return spec


async def wait_phase(sandbox: Any, ns: str, svc: str, phases: set[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        state = state_of(sandbox, ns, svc)
        if state is not None and state.get("phase") in phases:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{ns}/{svc} not in {phases} after {timeout}s: {state and state.get('phase')}"
            )
        await asyncio.sleep(0.1)


def leases(counts: Counts, keep: bool) -> Counts:
    """Only the leader election's Lease requests (keep=True), or everything else."""
    return {k: n for k, n in counts.items() if (k[2] == "leases") == keep}


def by_resource(counts: Counts) -> str:
    """`verb resource: n` for the controller's requests, most first."""
    items = sorted(
        (
            (f"{v} {g + '/' if g else ''}{r}", n)
            for (v, g, r, u), n in counts.items()
            if u == CONTROLLER_USER
        ),
        key=lambda kv: -kv[1],
    )
    return ", ".join(f"{k}: {n}" for k, n in items) or "none"


async def run(args: argparse.Namespace) -> int:
    print(f"machine: {machine()}")
    loads = LoadSampler()
    loads.start()
    with tempfile.TemporaryDirectory(prefix="ptc-bench-api-") as tmp:
        work = Path(args.workdir or tmp)
        async with bench_sandbox(work / "sandbox", scrape_interval=1.0) as sandbox:
            assert sandbox.prometheus is not None
            prom = sandbox.prometheus.url
            kubeconfig = controller_kubeconfig(sandbox)
            await zai_proxy_scenario(
                sandbox,
                stable_replicas=4,
                canary_rate_limit_initial=500,
                stable_rate_limit_initial=500,
            )
            await sandbox.prometheus.wait_for_data("zai_proxy_requests_total", timeout=60)
            # Phase 1: one complete rollout.
            config = write_config(work / "rollout.yaml", prom, [rollout_spec()])
            c0 = counts_of(sandbox)
            async with controller_process(
                config, kubeconfig, work / "rollout.log", identity="api-1"
            ) as ctl:
                await ctl.wait_ready(60)
                c1 = counts_of(sandbox)
                t1 = time.monotonic()
                await wait_phase(sandbox, NS, SERVICE, {"completed"}, 180)
                rollout_s = time.monotonic() - t1
                c2 = counts_of(sandbox)
            startup, rollout = diff_counts(c1, c0), diff_counts(c2, c1)
            # Phase 2: idle - the completed rollout plus K rollouts in a long hold.
            members = create_fleet(sandbox, range(args.hold_rollouts))
            await wait_fleet_ready(sandbox, members, 1, timeout=60)
            specs = [rollout_spec(), *(fleet_spec(m, interval="5s") for m in members)]
            config = write_config(work / "idle.yaml", prom, specs)
            async with controller_process(
                config, kubeconfig, work / "idle.log", identity="api-2"
            ) as ctl:
                await ctl.wait_ready(60)
                for m in members:
                    await wait_phase(
                        sandbox, m.namespace, m.service, {"progressing", "holding"}, 120
                    )
                deadline = time.monotonic() + 120
                while not all(
                    (state_of(sandbox, m.namespace, m.service) or {}).get("hold") for m in members
                ):
                    if time.monotonic() > deadline:
                        raise TimeoutError("held rollouts did not reach their step")
                    await asyncio.sleep(0.2)
                await asyncio.sleep(2.0)  # let the step's writes settle
                c3, t3 = counts_of(sandbox), time.monotonic()
                await asyncio.sleep(args.idle)
                c4, idle_s = counts_of(sandbox), time.monotonic() - t3
            idle = diff_counts(c4, c3)
    load_line = await loads.stop()
    rollouts = 1 + args.hold_rollouts
    per_min = 60.0 / idle_s
    s, r, i = (split_requests(leases(x, False), CONTROLLER_USER) for x in (startup, rollout, idle))
    lease_s, lease_r, lease_i = (
        split_requests(leases(x, True), CONTROLLER_USER) for x in (startup, rollout, idle)
    )
    print()
    print("Lease requests (leader election, per process) are counted apart from rollout requests.")
    rows: list[tuple[Any, ...]] = [
        ("startup: spawn -> /readyz", *s.values(), sum(s.values())),
        (f"4-step rollout: /readyz -> completed ({rollout_s:.0f}s)", *r.values(), sum(r.values())),
        ("  ... incl. startup", *(s[k] + r[k] for k in s), sum(s.values()) + sum(r.values())),
        (
            f"idle /min/rollout ({rollouts} rollouts, {idle_s:.0f}s)",
            *(round(v * per_min / rollouts, 2) for v in i.values()),
            round(sum(i.values()) * per_min / rollouts, 2),
        ),
        ("Lease: startup", *lease_s.values(), sum(lease_s.values())),
        ("Lease: during the rollout", *lease_r.values(), sum(lease_r.values())),
        (
            "Lease: idle /min (whole process)",
            *(round(v * per_min, 2) for v in lease_i.values()),
            round(sum(lease_i.values()) * per_min, 2),
        ),
    ]
    print(
        table(("requests (controller user)", "reads", "writes", "watches", "other", "total"), rows)
    )
    print()
    print(f"rollout requests by verb/resource: {by_resource(rollout)}")
    print(f"idle requests by verb/resource ({idle_s:.0f}s): {by_resource(idle)}")
    non_watch = i["reads"] + i["writes"] + i["other"]
    lease_min = sum(lease_i.values()) * per_min
    print()
    print(
        table(
            ("target", "measured", "met"),
            [
                (
                    "0 requests per idle minute per rollout beyond the watches",
                    f"{non_watch * per_min / rollouts:.2f}/min/rollout",
                    "yes" if non_watch == 0 else "NO",
                ),
                (
                    "  (process-wide Lease renewals, not per rollout)",
                    f"{lease_min:.1f}/min",
                    "yes" if lease_min == 0 else "NO",
                ),
            ],
        )
    )
    print(load_line)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="30 s idle window")
    parser.add_argument("--idle", type=float, default=120.0, help="idle window, s (120)")
    parser.add_argument("--hold-rollouts", type=int, default=3, help="rollouts in a long hold (3)")
    parser.add_argument("--workdir", help="keep the sandbox, configs and logs here")
    args = parser.parse_args()
    if args.quick:
        args.idle = 30.0
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
