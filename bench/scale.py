"""Controller cost at scale: one `ptc run` process managing N concurrent rollouts.

One sandbox with one shared real Prometheus. For each N (10, 100, 500, 2000; --quick: 10, 50) the
fleet grows to N Services, each with a stable and a canary Deployment of one pod
(bench/common.py `create_fleet`); a fresh controller process is started with N rollouts in its
config. Each rollout has 3 metrics (a 502 ratio, a 429 ratio compared against stable, a
rate-limit gauge) every 10 s and a 2 h hold at 50 %, so all stay in progress. Light traffic
(5 req/s) goes to the first Service; the others are idle, so their analysis is inconclusive and
holds (onInconclusive: hold), which costs the same queries.

What Prometheus is asked: the fleet's rollouts share one template in one namespace, so they
evaluate on one grid and the controller sends one per-pod query per distinct source per tick
for all of them (`controller/shell/providers/prometheus.py`, `controller/core/analysis/
grouping.py`): 4 per interval (502s, 429s, requests, limiter gauge) whatever N, where each
rollout used to send 7 of its own per evaluation. The bench computes that plan from the fleet's
config with the controller's own compiler (`bench/scale_report.py` `query_plan`), prints it, and
checks the measured queries per interval against it.

Once every rollout has reached its step (or the ramp timeout passed: --timeout, at least
0.3 s per rollout), the bench measures over --measure seconds: controller CPU (utime+stime from
/proc/PID/stat), peak RSS (VmHWM from /proc/PID/status), Prometheus instant queries (Prometheus'
own prometheus_http_requests_total{handler="/api/v1/query"} read from its /metrics; nothing else
queries it during the window), the Prometheus server's own CPU and the bench process's (the
sandbox: API server, simulated pods, traffic) from /proc, evaluations per interval per rollout
and their latency (median, p95) from the controller's "analysis evaluated" log lines. Then it
fits how each grows with N (least squares slope, and the log-log exponent). --profile records
py-spy flame graphs (SVG and collapsed stacks) of the largest N after its measurement window
(py-spy stops the process it samples: do not sample the bench process during a timed run).
Once the fleet is ready, the bench process freezes it out of its garbage collector
(bench/gcpause.py; --no-gc-freeze not), and prints its full collections: at 2000 Services each
stopped the sandbox for seconds, long enough for every controller's Lease renewal to time out.

--shards K runs K replicas of `ptc run --shards K` (distinct identities, the same config and
sandbox) instead of one controller (bench/scale_controllers.py). It waits until every shard's
Lease is held, spread evenly over the replicas (printed: seconds from spawn), then times the ramp
from there (rollouts of shards taken earlier may already be on their way) and measures as above.
It prints per-replica figures (CPU cores, peak RSS, evaluations and their share and latency,
metric errors) and totals: CPU, RSS, queries and evaluations summed, latency pooled; the
0.25-core and 200 MB targets are checked against the busiest replica.

The targets it checks (issue 14): at the largest N, < 0.25 core, < 200 MB peak RSS, every
rollout at its step, 1.0 evaluations per interval per rollout with no error verdicts; queries
per interval as planned, with a log-log exponent < 0.3 over the sizes.

Usage: python bench/scale.py [--quick] [--sizes 10,100,500,2000] [--shards K] [--measure S]
       [--ramp S] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import resource
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    PROFILES,
    LoadSampler,
    bench_sandbox,
    cpu_seconds,
    machine,
    profile,
    prometheus_query_total,
    top_frames,
)
from bench.fleet import FleetMember, create_fleet, state_of, wait_fleet_ready
from bench.gcpause import GcPauses, freeze
from bench.scale_controllers import analysis_health, read_analysis, readyz_lag, start_controllers
from bench.scale_report import fleet_plan, report

INTERVAL = 10.0


def reached(state: dict[str, Any] | None) -> bool:
    return (
        state is not None
        and state.get("phase") in ("progressing", "holding")
        and state.get("hold") is not None
    )


def ramp_timeout(n: int, floor: float) -> float:
    """How long N rollouts may take to reach their step: the floor, or 0.3 s per rollout."""
    return max(floor, 0.3 * n)


async def wait_all_reached(sandbox: Any, members: list[FleetMember], timeout: float) -> int:
    """Wait until every rollout holds at its first step; how many did (on timeout: fewer)."""
    deadline = time.monotonic() + timeout
    pending = list(members)
    while pending and time.monotonic() < deadline:
        # only the ones not there yet: a reached rollout holds for 2 h
        pending = [m for m in pending if not reached(state_of(sandbox, m.namespace, m.service))]
        if pending:
            await asyncio.sleep(1.0)
    return len(members) - len(pending)


async def measure_size(
    args: argparse.Namespace,
    sandbox: Any,
    session: aiohttp.ClientSession,
    work: Path,
    members: list[FleetMember],
    t0: float,
) -> dict[str, Any]:
    """Start the controller(s) for the fleet, wait for the ramp, measure one window.

    Sharded (--shards K), the row also has `replicas`: per process CPU cores, peak RSS and
    analysis figures; the row's own figures are the totals (CPU, queries, evaluations) or
    pooled (evaluation latency).
    """
    n = len(members)
    prom = sandbox.prometheus.url
    prom_pid = sandbox.prometheus.pid
    run_args = shlex.split(args.run_args)
    async with start_controllers(
        work, sandbox, members, n, args.timeout, args.shards, run_args
    ) as (
        ctls,
        ready_s,
    ):
        if args.shards:
            print(f"N={n}: every shard led, spread evenly, {ctls.led_s:.1f}s after spawn")
        ramp_start = time.monotonic()
        done = await wait_all_reached(sandbox, members, args.ramp or ramp_timeout(n, args.timeout))
        ramp_s = time.monotonic() - ramp_start
        if done < n:
            print(f"N={n}: only {done}/{n} rollouts reached their step in {ramp_s:.0f}s")
        offsets = [log.stat().st_size for log in ctls.logs]
        cpu0, q0 = ctls.cpu_each(), await prometheus_query_total(session, prom)
        prom0 = cpu_seconds(prom_pid) if prom_pid else math.nan
        bench0 = cpu_seconds(os.getpid())
        t1 = time.monotonic()
        rss_samples = []
        while time.monotonic() - t1 < args.measure:
            await asyncio.sleep(2.0)
            rss_samples.append(ctls.rss_kb())
        elapsed = time.monotonic() - t1
        cpu1, q1 = ctls.cpu_each(), await prometheus_query_total(session, prom)
        prom1 = cpu_seconds(prom_pid) if prom_pid else math.nan
        bench1 = cpu_seconds(os.getpid())
        in_step = sum(1 for m in members if reached(state_of(sandbox, m.namespace, m.service)))
        cores = [(b - a) / elapsed for a, b in zip(cpu0, cpu1, strict=True)]
        row: dict[str, Any] = {
            "n": n,
            "reached": in_step,
            "setup_s": ramp_start - t0,
            "ready_s": ready_s,
            "ramp_s": ramp_s if done == n else math.nan,
            "cpu_per_min": sum(cores) * 60,
            "cores": sum(cores),
            "hwm_mb": ctls.hwm_kb() / 1024,
            "rss_mb": max(rss_samples or [ctls.rss_kb()]) / 1024,
            "q_per_min": (q1 - q0) / elapsed * 60,
            "prom_cores": (prom1 - prom0) / elapsed,
            "sandbox_cores": (bench1 - bench0) / elapsed,
        }
        row["q_per_interval"] = row["q_per_min"] * INTERVAL / 60
        parts = [read_analysis(log, off) for log, off in zip(ctls.logs, offsets, strict=True)]
        row.update(analysis_health(parts))
        row["evals_per_interval"] = row["evaluations"] / elapsed * INTERVAL / n
        if args.shards:
            row["led_s"] = ctls.led_s
            row["replicas"] = [
                {
                    "identity": ident,
                    "rollouts": count,
                    "cores": c,
                    "hwm_mb": hwm / 1024,
                    **analysis_health([part]),
                }
                for ident, count, c, hwm, part in zip(
                    ctls.identities,
                    ctls.rollouts_each or [n],
                    cores,
                    ctls.hwm_kb_each(),
                    parts,
                    strict=True,
                )
            ]
        for ident, proc in zip(ctls.identities, ctls.procs, strict=True):
            lag = await readyz_lag(session, proc.url)
            if lag is not None:
                who = f" {ident}" if args.shards else ""
                print(f"N={n}:{who} /readyz lag {json.dumps(lag)}", flush=True)
        if args.profile and n == max(args.sizes):
            files = await profile(ctls.pids[0], f"scale-{n}", args.profile_seconds)
            print(f"profiles: {', '.join(files)}")
            raw = PROFILES / f"scale-{n}.txt"
            if raw.exists():
                for frame, share in top_frames(raw):
                    print(f"  {share:6.1%}  {frame}")
    return row


def scrape_interval(largest: int) -> float:
    """The sandbox's scrape interval: 5 s, 15 s for fleets over 500.

    The simulated pods live in the bench process: at 2000 pods a 5 s scrape is 400 expositions
    a second, which starves the bench on 2 cores, makes Prometheus time out and reconnect, and
    piles up sockets until the process runs out of file descriptors. The analysis window (1m)
    still holds four scrapes at 15 s.
    """
    return 5.0 if largest <= 500 else 15.0


def raise_fd_limit() -> None:
    """Each simulated pod holds a listening socket and Prometheus' scrape connection."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def run(args: argparse.Namespace) -> int:
    sizes = sorted(args.sizes)
    raise_fd_limit()
    if args.scrape is None:
        args.scrape = scrape_interval(sizes[-1])
    # A whole number of analysis intervals: the N runners tick together, so a window of 4.5
    # intervals holds 4 or 5 evaluations of each and the per-minute figures jump by 20 %.
    args.measure = math.ceil(args.measure / INTERVAL) * INTERVAL
    loads = LoadSampler()
    loads.start()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="ptc-bench-scale-") as tmp:
        work = Path(args.workdir or tmp)
        plan = fleet_plan(Path(tmp))
        print(f"machine: {machine()}")
        print(f"command: python bench/scale.py {shlex.join(args.argv)}")
        print(
            f"setup: sizes {sizes}, analysis every {INTERVAL:g}s with 3 metrics "
            f"({plan.describe()}), scrape {args.scrape:g}s, measure {args.measure:g}s"
            + (
                f", {args.shards} replicas of `ptc run --shards {args.shards}`"
                if args.shards
                else ""
            )
            + (f", ptc run {args.run_args}" if args.run_args else ""),
            flush=True,
        )
        async with (
            bench_sandbox(
                work / "sandbox", scrape_interval=args.scrape, traffic_rate=5.0, ready_delay=0.3
            ) as sandbox,
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
        ):
            assert sandbox.prometheus is not None
            members: list[FleetMember] = []
            for n in sizes:
                t0 = time.monotonic()
                members += create_fleet(sandbox, range(len(members), n))
                sandbox.route_traffic_to(members[0].namespace, members[0].service)
                try:
                    await wait_fleet_ready(
                        sandbox, members, 1, timeout=ramp_timeout(n, args.timeout)
                    )
                except TimeoutError as exc:
                    print(f"N={n}: {exc}; stopping here")
                    break
                if not args.no_gc_freeze:
                    print(f"N={n}: sandbox gc.freeze(): {freeze()} objects", flush=True)
                pauses = GcPauses()
                pauses.start()
                try:
                    row = await measure_size(args, sandbox, session, work, members, t0)
                finally:
                    pauses.stop()
                print(f"N={n}: sandbox process from spawn to the end: {pauses.summary()}")
                rows.append(row)
                print(
                    f"N={n}: fleet {row['setup_s']:.0f}s, ready {row['ready_s']:.2f}s, "
                    f"ramp {row['ramp_s']:.1f}s, {row['cores']:.3f} cores, "
                    f"HWM {row['hwm_mb']:.1f} MB, {row['q_per_min']:.0f} queries/min, "
                    f"{row['evals_per_interval']:.2f} evaluations/interval/rollout "
                    f"(median {row['eval_median_s']:.2f}s, p95 {row['eval_p95_s']:.2f}s, "
                    f"{row['metric_errors']} metric errors), prometheus "
                    f"{row['prom_cores']:.3f} cores, sandbox {row['sandbox_cores']:.3f} cores, "
                    f"loadavg {loads.samples[-1]:.2f}",
                    flush=True,
                )
    load_line = await loads.stop()
    if not rows:
        return 1
    report(rows, plan)
    print(load_line)
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="sizes 10,50 (unless --sizes); 30 s windows"
    )
    parser.add_argument(
        "--sizes",
        type=lambda s: [int(x) for x in s.split(",")],
        default=None,
        help="rollout counts (10,100,500)",
    )
    parser.add_argument(
        "--shards",
        type=int,
        default=0,
        metavar="K",
        help="K replicas of `ptc run --shards K` instead of one controller; per-replica\n"
        "CPU, peak RSS and analysis, and totals (0: one controller, the default)",
    )
    parser.add_argument(
        "--run-args",
        default="",
        metavar="FLAGS",
        help="more `ptc run` flags for every controller, e.g.\n"
        "'--lease-duration 30s --renew-deadline 20s' (none)",
    )
    parser.add_argument(
        "--ramp",
        type=float,
        default=None,
        help="ramp timeout, s (default: --timeout, at least 0.3 s/rollout)",
    )
    parser.add_argument("--measure", type=float, default=60.0, help="window per size, s (60)")
    parser.add_argument(
        "--scrape", type=float, default=None, help="scrape interval, s (5; 15 above N=500)"
    )
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="per phase, s (300; at least 0.3 s/rollout)"
    )
    parser.add_argument(
        "--no-gc-freeze",
        action="store_true",
        help="leave the fleet in the sandbox's garbage collector (bench/gcpause.py)",
    )
    parser.add_argument("--profile", action="store_true", help="py-spy the largest N")
    parser.add_argument("--profile-seconds", type=int, default=20)
    parser.add_argument("--workdir", help="keep the sandbox, configs and logs here")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.shards < 0:
        parser.error("--shards: 0 (one controller) or more")
    if args.quick:
        args.sizes, args.measure = args.sizes or [10, 50], 30.0
    args.sizes = args.sizes or [10, 100, 500]
    return args


def main() -> int:
    return asyncio.run(run(parse_args()))


if __name__ == "__main__":
    sys.exit(main())
