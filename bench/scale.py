"""Controller cost at scale: one `ptc run` process managing N concurrent rollouts.

One sandbox with one shared real Prometheus. For each N (10, 100, 500; --quick: 10, 50) the
fleet grows to N Services, each with a stable and a canary Deployment of one pod
(bench/common.py `create_fleet`); a fresh controller process is started with N rollouts in its
config. Each rollout has 3 metrics (a 502 ratio, a 429 ratio compared against stable, a
rate-limit gauge: 7 PromQL queries per evaluation) every 10 s and a 2 h hold at 50 %, so all
stay in progress. Light traffic (5 req/s) goes to the first Service; the others are idle, so
their analysis is inconclusive and holds (onInconclusive: hold), which costs the same queries.

Once every rollout has reached its step, the bench measures over --measure seconds: controller
CPU (utime+stime from /proc/PID/stat), peak RSS (VmHWM from /proc/PID/status) and Prometheus
instant queries (Prometheus' own prometheus_http_requests_total{handler="/api/v1/query"} read
from its /metrics; nothing else queries it during the window). Then it fits how each grows with
N (least squares slope, and the log-log exponent). --profile records py-spy flame graphs (SVG
and collapsed stacks) of the largest N after its measurement window.

Usage: python bench/scale.py [--quick] [--sizes 10,100,500] [--measure S] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    PROFILES,
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


async def wait_all_reached(sandbox: Any, members: list[FleetMember], timeout: float) -> int:
    """Wait until every rollout holds at its first step; how many did (on timeout: fewer)."""
    deadline = time.monotonic() + timeout
    done = 0
    while time.monotonic() < deadline:
        done = sum(1 for m in members if reached(state_of(sandbox, m.namespace, m.service)))
        if done == len(members):
            break
        await asyncio.sleep(1.0)
    return done


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
    """From the controller's log after `offset`: evaluations, their median duration, errors."""
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
        "metric_errors": errors,
    }


async def run(args: argparse.Namespace) -> int:
    sizes = sorted(args.sizes)
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
            prom = sandbox.prometheus.url
            members: list[FleetMember] = []
            for n in sizes:
                t0 = time.monotonic()
                members += create_fleet(sandbox, range(len(members), n))
                sandbox.route_traffic_to(members[0].namespace, members[0].service)
                try:
                    await wait_fleet_ready(sandbox, members, 1, timeout=args.timeout)
                except TimeoutError as exc:
                    print(f"N={n}: {exc}; stopping here")
                    break
                config = write_config(
                    work / f"config-{n}.yaml", prom, [fleet_spec(m) for m in members]
                )
                log = work / f"controller-{n}.log"
                async with controller_process(
                    config, controller_kubeconfig(sandbox), log, identity=f"scale-{n}"
                ) as ctl:
                    ready_s = await ctl.wait_ready(args.timeout)
                    ramp_start = time.monotonic()
                    done = await wait_all_reached(sandbox, members, args.timeout)
                    ramp_s = time.monotonic() - ramp_start
                    if done < n:
                        print(f"N={n}: only {done}/{n} rollouts reached their step in time")
                    offset = log.stat().st_size
                    cpu0, q0, t1 = (
                        cpu_seconds(ctl.pid),
                        await prometheus_query_total(session, prom),
                        time.monotonic(),
                    )
                    rss_samples = []
                    while time.monotonic() - t1 < args.measure:
                        await asyncio.sleep(2.0)
                        rss_samples.append(memory_kb(ctl.pid)["VmRSS"])
                    elapsed = time.monotonic() - t1
                    cpu1, q1 = cpu_seconds(ctl.pid), await prometheus_query_total(session, prom)
                    mem = memory_kb(ctl.pid)
                    in_progress = sum(
                        1 for m in members if reached(state_of(sandbox, m.namespace, m.service))
                    )
                    row = {
                        "n": n,
                        "reached": in_progress,
                        "setup_s": ramp_start - t0,
                        "ready_s": ready_s,
                        "ramp_s": ramp_s,
                        "cpu_per_min": (cpu1 - cpu0) / elapsed * 60,
                        "cores": (cpu1 - cpu0) / elapsed,
                        "hwm_mb": mem["VmHWM"] / 1024,
                        "rss_mb": max(rss_samples or [mem["VmRSS"]]) / 1024,
                        "q_per_min": (q1 - q0 - 0) / elapsed * 60,
                    }
                    row["q_per_interval"] = row["q_per_min"] * INTERVAL / 60
                    lag = await readyz_lag(session, ctl.url)
                    row.update(analysis_health(log, offset))
                    row["evals_per_interval"] = row["evaluations"] / elapsed * INTERVAL / n
                    rows.append(row)
                    print(
                        f"N={n}: ready {ready_s:.2f}s, ramp {ramp_s:.1f}s, "
                        f"{row['cores']:.3f} cores, HWM {row['hwm_mb']:.1f} MB, "
                        f"{row['q_per_min']:.0f} queries/min, "
                        f"{row['evals_per_interval']:.2f} evaluations/interval/rollout "
                        f"(median {row['eval_median_s']:.2f}s, "
                        f"{row['metric_errors']} metric errors), "
                        f"loadavg {loads.samples[-1]:.2f}",
                        flush=True,
                    )
                    if lag is not None:
                        print(f"N={n}: /readyz lag {json.dumps(lag)}", flush=True)
                    if args.profile and n == sizes[-1]:
                        files = await profile(ctl.pid, f"scale-{n}", args.profile_seconds)
                        print(f"profiles: {', '.join(files)}")
                        raw = PROFILES / f"scale-{n}.txt"
                        if raw.exists():
                            for frame, share in top_frames(raw):
                                print(f"  {share:6.1%}  {frame}")
    load_line = await loads.stop()
    if not rows:
        return 1
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
                "metric errors",
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
                    int(r["metric_errors"]),
                )
                for r in rows
            ],
        )
    )
    if len(rows) >= 2:
        ns = [r["n"] for r in rows]
        print()
        fits = []
        for key, label in (
            ("cpu_per_min", "CPU s/min"),
            ("hwm_mb", "peak RSS MB"),
            ("q_per_interval", "queries/interval"),
        ):
            ys = [r[key] for r in rows]
            slope, intercept = linear_fit(ns, ys)
            fits.append((label, slope, intercept, loglog_exponent(ns, ys)))
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
                    "queries/interval sub-linear in N (shared template)",
                    f"exponent {exponent:.2f}"
                    + (" (saturated: analysis behind)" if saturated else ""),
                    _ok(exponent < 0.9 and not saturated),
                ),
            ],
        )
    )
    print(load_line)
    return 0


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
    parser.add_argument("--scrape", type=float, default=5.0, help="scrape interval, s (5)")
    parser.add_argument("--timeout", type=float, default=300.0, help="per phase, s (300)")
    parser.add_argument("--profile", action="store_true", help="py-spy the largest N")
    parser.add_argument("--profile-seconds", type=int, default=20)
    parser.add_argument("--workdir", help="keep the sandbox, configs and logs here")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.measure = [10, 50], 30.0
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
