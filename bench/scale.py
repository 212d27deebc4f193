"""Controller cost at scale: one `ptc run` process managing N concurrent rollouts.

One sandbox with one shared real Prometheus. For each N (10, 100, 500, 2000; --quick: 10, 50) the
fleet grows to N Services, each with a stable and a canary Deployment of one pod
(bench/common.py `create_fleet`); a fresh controller process is started with N rollouts in its
config. Each rollout has 3 metrics (a 502 ratio, a 429 ratio compared against stable, a
rate-limit gauge: 7 PromQL queries per evaluation) every 10 s and a 2 h hold at 50 %, so all
stay in progress. Light traffic (5 req/s) goes to the first Service; the others are idle, so
their analysis is inconclusive and holds (onInconclusive: hold), which costs the same queries.

Once every rollout has reached its step (or the ramp timeout passed: --timeout, at least
0.3 s per rollout), the bench measures over --measure seconds: controller CPU (utime+stime from
/proc/PID/stat), peak RSS (VmHWM from /proc/PID/status), Prometheus instant queries (Prometheus'
own prometheus_http_requests_total{handler="/api/v1/query"} read from its /metrics; nothing else
queries it during the window), the Prometheus server's own CPU and the bench process's (the
sandbox: API server, simulated pods, traffic) from /proc, evaluations per interval per rollout
and their latency (median, p95) from the controller's "analysis evaluated" log lines. Then it
fits how each grows with N (least squares slope, and the log-log exponent). --profile records
py-spy flame graphs (SVG and collapsed stacks) of the largest N after its measurement window.

The controller side is a list of processes (`Controllers`), summed: a sharded run adds one
process per shard there without touching the measurement.

Usage: python bench/scale.py [--quick] [--sizes 10,100,500,2000] [--measure S] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import resource
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    PROFILES,
    ControllerProcess,
    FleetMember,
    LoadSampler,
    bench_sandbox,
    controller_kubeconfig,
    controller_process,
    cpu_seconds,
    create_fleet,
    fleet_spec,
    linear_fit,
    loglog_exponent,
    machine,
    median,
    memory_kb,
    percentile,
    profile,
    prometheus_query_total,
    state_of,
    table,
    top_frames,
    wait_fleet_ready,
    write_config,
)

INTERVAL = 10.0
QUERIES_PER_EVALUATION = 7  # 502 ratio: value+count; 429 ratio: 2 per side; gauge: 1


def reached(state: dict[str, Any] | None) -> bool:
    return (
        state is not None
        and state.get("phase") in ("progressing", "holding")
        and state.get("stepReachedAt") is not None
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


async def readyz_lag(session: aiohttp.ClientSession, url: str) -> dict[str, Any] | None:
    """The controller's own lag summary (None from a controller without one)."""
    try:
        async with session.get(f"{url}/readyz") as response:
            body = await response.json()
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return None
    lag = body.get("lag") if isinstance(body, dict) else None
    return lag if isinstance(lag, dict) else None


def analysis_health(log: Path, offset: int) -> dict[str, float]:
    """From the controller's log after `offset`: evaluations, their latency, metric errors."""
    evaluations, errors, durations = 0, 0, []
    with log.open("rb") as handle:
        handle.seek(offset)
        for line in handle:
            if b'"analysis evaluated"' not in line:
                continue
            try:
                record = json.loads(line)
            except ValueError:
                continue
            evaluations += 1
            durations.append(float(record.get("duration_s") or 0.0))
            errors += sum(1 for m in record.get("metrics", ()) if m.get("verdict") == "error")
    return {
        "evaluations": evaluations,
        "eval_median_s": median(durations) if durations else math.nan,
        "eval_p95_s": percentile(durations, 95) if durations else math.nan,
        "metric_errors": errors,
    }


@dataclass
class Controllers:
    """The controller processes of one size (one today; one per shard in a sharded run)."""

    procs: list[ControllerProcess]

    @property
    def pids(self) -> list[int]:
        return [c.pid for c in self.procs]

    def cpu(self) -> float:
        return sum(cpu_seconds(pid) for pid in self.pids)

    def rss_kb(self) -> int:
        return sum(memory_kb(pid)["VmRSS"] for pid in self.pids)

    def hwm_kb(self) -> int:
        return sum(memory_kb(pid)["VmHWM"] for pid in self.pids)


# What `defaults:` may carry (controller.core.config.model.DEFAULTABLE), in the file's spelling.
SHARED = ("namespace", "maxSurge", "maxUnavailable", "steps", "analysis", "preflight")


def fleet_config(path: Path, prometheus_url: str, members: Sequence[FleetMember]) -> Path:
    """The fleet's config, what it shares under `defaults:` (as a real fleet's would be).

    Written out in full, 2000 rollouts take 2.1 MB: over the 1 MiB a config (and a ConfigMap)
    may hold. With the shared part once, each rollout is its name and targets.
    """
    specs = [fleet_spec(m) for m in members]
    if not specs:
        return write_config(path, prometheus_url, specs)
    defaults = {k: specs[0][k] for k in SHARED}
    rollouts = [
        {k: v for k, v in spec.items() if k not in SHARED or spec[k] != defaults[k]}
        for spec in specs
    ]
    write_config(path, prometheus_url, rollouts)
    body = json.loads(path.read_text())
    body["defaults"] = defaults
    path.write_text(json.dumps(body, separators=(",", ":")))
    return path


@asynccontextmanager
async def start_controllers(
    work: Path, sandbox: Any, members: Sequence[FleetMember], n: int, ready_timeout: float
) -> AsyncIterator[tuple[Controllers, float, list[Path]]]:
    """Start the controllers of size `n`; yields them, seconds to /readyz, their logs."""
    assert sandbox.prometheus is not None
    config = fleet_config(work / f"config-{n}.yaml", sandbox.prometheus.url, members)
    log = work / f"controller-{n}.log"
    async with controller_process(
        config, controller_kubeconfig(sandbox), log, identity=f"scale-{n}"
    ) as ctl:
        ready_s = await ctl.wait_ready(ready_timeout)
        yield Controllers([ctl]), ready_s, [log]


async def measure_size(
    args: argparse.Namespace,
    sandbox: Any,
    session: aiohttp.ClientSession,
    work: Path,
    members: list[FleetMember],
    t0: float,
) -> dict[str, float]:
    """Start the controller(s) for the fleet, wait for the ramp, measure one window."""
    n = len(members)
    prom = sandbox.prometheus.url
    prom_pid = sandbox.prometheus.pid
    async with start_controllers(work, sandbox, members, n, args.timeout) as (ctls, ready_s, logs):
        ramp_start = time.monotonic()
        done = await wait_all_reached(sandbox, members, ramp_timeout(n, args.timeout))
        ramp_s = time.monotonic() - ramp_start
        if done < n:
            print(f"N={n}: only {done}/{n} rollouts reached their step in {ramp_s:.0f}s")
        offsets = [log.stat().st_size for log in logs]
        cpu0, q0 = ctls.cpu(), await prometheus_query_total(session, prom)
        prom0 = cpu_seconds(prom_pid) if prom_pid else math.nan
        bench0 = cpu_seconds(os.getpid())
        t1 = time.monotonic()
        rss_samples = []
        while time.monotonic() - t1 < args.measure:
            await asyncio.sleep(2.0)
            rss_samples.append(ctls.rss_kb())
        elapsed = time.monotonic() - t1
        cpu1, q1 = ctls.cpu(), await prometheus_query_total(session, prom)
        prom1 = cpu_seconds(prom_pid) if prom_pid else math.nan
        bench1 = cpu_seconds(os.getpid())
        in_step = sum(1 for m in members if reached(state_of(sandbox, m.namespace, m.service)))
        row: dict[str, float] = {
            "n": n,
            "reached": in_step,
            "setup_s": ramp_start - t0,
            "ready_s": ready_s,
            "ramp_s": ramp_s if done == n else math.nan,
            "cpu_per_min": (cpu1 - cpu0) / elapsed * 60,
            "cores": (cpu1 - cpu0) / elapsed,
            "hwm_mb": ctls.hwm_kb() / 1024,
            "rss_mb": max(rss_samples or [ctls.rss_kb()]) / 1024,
            "q_per_min": (q1 - q0) / elapsed * 60,
            "prom_cores": (prom1 - prom0) / elapsed,
            "sandbox_cores": (bench1 - bench0) / elapsed,
        }
        row["q_per_interval"] = row["q_per_min"] * INTERVAL / 60
        health = [analysis_health(log, off) for log, off in zip(logs, offsets, strict=True)]
        row.update(health[0])  # one log per controller; summing shards comes with them
        row["evals_per_interval"] = row["evaluations"] / elapsed * INTERVAL / n
        lag = await readyz_lag(session, ctls.procs[0].url)
        if lag is not None:
            print(f"N={n}: /readyz lag {json.dumps(lag)}", flush=True)
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
    print(f"machine: {machine()}")
    print(
        f"setup: sizes {sizes}, analysis every {INTERVAL:g}s with 3 metrics "
        f"({QUERIES_PER_EVALUATION} queries), scrape {args.scrape:g}s, measure {args.measure:g}s"
    )
    loads = LoadSampler()
    loads.start()
    rows: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="ptc-bench-scale-") as tmp:
        work = Path(args.workdir or tmp)
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
                row = await measure_size(args, sandbox, session, work, members, t0)
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
    report(rows)
    print(load_line)
    return 0


def report(rows: list[dict[str, float]]) -> None:
    print()
    print(
        table(
            (
                "N",
                "in step",
                "/readyz s",
                "ramp s",
                "CPU s/min",
                "cores",
                "peak RSS MB",
                "prom q/min",
                "q/interval",
                "q/interval/rollout",
                "evals/interval/rollout",
                "eval median s",
                "eval p95 s",
                "metric errors",
                "prometheus cores",
                "sandbox cores",
            ),
            [
                (
                    int(r["n"]),
                    int(r["reached"]),
                    r["ready_s"],
                    r["ramp_s"],
                    r["cpu_per_min"],
                    r["cores"],
                    r["hwm_mb"],
                    r["q_per_min"],
                    r["q_per_interval"],
                    r["q_per_interval"] / r["n"],
                    r["evals_per_interval"],
                    r["eval_median_s"],
                    r["eval_p95_s"],
                    int(r["metric_errors"]),
                    r["prom_cores"],
                    r["sandbox_cores"],
                )
                for r in rows
            ],
        )
    )
    if len(rows) >= 2:
        print()
        fits = []
        for key, label in (
            ("cpu_per_min", "CPU s/min"),
            ("hwm_mb", "peak RSS MB"),
            ("q_per_interval", "queries/interval"),
            ("ramp_s", "ramp s"),
            ("eval_median_s", "eval median s"),
            ("prom_cores", "prometheus cores"),
        ):
            pairs = [(r["n"], r[key]) for r in rows if not math.isnan(r[key])]
            if len(pairs) < 2:
                continue
            xs, ys = [p[0] for p in pairs], [p[1] for p in pairs]
            slope, intercept = linear_fit(xs, ys)
            fits.append((label, slope, intercept, loglog_exponent(xs, ys)))
        print(table(("figure", "slope per rollout", "intercept", "log-log exponent"), fits))
    last = rows[-1]
    exponent = loglog_exponent([r["n"] for r in rows], [r["q_per_interval"] for r in rows])
    # Fewer evaluations or queries than scheduled means the controller could not keep up:
    # a flat query count is then a ceiling, not sharing.
    saturated = any(r["evals_per_interval"] < 0.8 or r["metric_errors"] > 0 for r in rows)
    print()
    print(
        table(
            ("target", "measured", "met"),
            [
                (
                    f"N={int(last['n'])}: < 0.25 core",
                    f"{last['cores']:.3f} cores",
                    _ok(last["cores"] < 0.25),
                ),
                (
                    f"N={int(last['n'])}: < 200 MB RSS",
                    f"{last['hwm_mb']:.1f} MB",
                    _ok(last["hwm_mb"] < 200),
                ),
                (
                    f"N={int(last['n'])}: every rollout in step",
                    f"{int(last['reached'])}/{int(last['n'])}",
                    _ok(last["reached"] == last["n"]),
                ),
                (
                    "queries/interval sub-linear in N (shared template)",
                    f"exponent {exponent:.2f}"
                    + (" (saturated: analysis behind)" if saturated else ""),
                    _ok(exponent < 0.9 and not saturated),
                ),
            ],
        )
    )


def _ok(flag: bool) -> str:
    return "yes" if flag else "NO"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="sizes 10,50; 30 s windows")
    parser.add_argument(
        "--sizes",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[10, 100, 500],
        help="rollout counts (10,100,500)",
    )
    parser.add_argument("--measure", type=float, default=60.0, help="window per size, s (60)")
    parser.add_argument(
        "--scrape", type=float, default=None, help="scrape interval, s (5; 15 above N=500)"
    )
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="per phase, s (300; at least 0.3 s/rollout)"
    )
    parser.add_argument("--profile", action="store_true", help="py-spy the largest N")
    parser.add_argument("--profile-seconds", type=int, default=20)
    parser.add_argument("--workdir", help="keep the sandbox, configs and logs here")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.measure = [10, 50], 30.0
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
