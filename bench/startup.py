"""Startup: process spawn -> /readyz 200 with 1 and 500 rollouts configured; import time.

The sandbox (no Prometheus, no traffic: readiness does not depend on them) holds a fleet of
Services, each with a stable Deployment of one pod and a canary Deployment at 0
(bench/common.py `create_fleet`). For each size the controller is started --repeats times as
`python -m controller.ops.cli run`; the time from just before the spawn to the first 200 from
/readyz (polled every 10 ms) is recorded, and the process is stopped right away. Import time is
measured two ways, --repeats times each: `python -X importtime -c 'import controller.ops.cli'`
(cumulative µs of controller.ops.cli) and the wall time of `python -c 'import controller.ops.cli'`
minus that of `python -c pass`.

Usage: python bench/startup.py [--quick] [--sizes 1,500] [--repeats N]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    PROFILES,
    REPO,
    LoadSampler,
    bench_sandbox,
    controller_kubeconfig,
    controller_process,
    machine,
    median,
    profile,
    spread,
    table,
    top_frames,
    write_config,
)
from bench.fleet import FleetMember, create_fleet, fleet_spec, wait_fleet_ready


def import_times(module: str, repeats: int) -> tuple[list[float], list[float]]:
    """(-X importtime cumulative seconds, wall-clock import seconds) per repeat."""
    cumulative, wall = [], []
    for _ in range(repeats):
        out = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", f"import {module}"],
            capture_output=True,
            text=True,
            check=True,
            cwd=REPO,
        ).stderr
        for line in out.splitlines():
            parts = [p.strip() for p in line.removeprefix("import time:").split("|")]
            if len(parts) == 3 and parts[2] == module:
                cumulative.append(int(parts[1]) / 1e6)
        times = []
        for code in ("pass", f"import {module}"):
            t = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
            times.append(time.perf_counter() - t)
        wall.append(times[1] - times[0])
    return cumulative, wall


def biggest_imports(module: str, limit: int = 8) -> list[tuple[str, float]]:
    """Third-party and stdlib packages by cumulative import time (one run of `module`)."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    ).stderr
    top: dict[str, float] = {}
    for line in out.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if len(parts) != 3 or not parts[1].strip().isdigit():
            continue
        name = parts[2].strip()
        if "." not in name and name not in ("controller", "encodings", "site"):
            top[name] = max(top.get(name, 0.0), int(parts[1]) / 1e6)
    return sorted(top.items(), key=lambda kv: -kv[1])[:limit]


async def run(args: argparse.Namespace) -> int:
    print(f"machine: {machine()}")
    loads = LoadSampler(every=2.0)
    loads.start()
    imports = {
        m: import_times(m, args.repeats) for m in ("controller.ops.cli", "controller.shell.daemon")
    }
    results: dict[int, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="ptc-bench-startup-") as tmp:
        work = Path(args.workdir or tmp)
        async with bench_sandbox(work / "sandbox", prometheus=False, traffic_rate=0.0) as sandbox:
            members: list[FleetMember] = []
            for n in sorted(args.sizes):
                members += create_fleet(sandbox, range(len(members), n))
                await wait_fleet_ready(sandbox, members, 1, timeout=300)
                config = write_config(
                    work / f"config-{n}.yaml", None, [fleet_spec(m) for m in members]
                )
                results[n] = []
                for r in range(args.repeats):
                    log = work / f"controller-{n}-{r}.log"
                    async with controller_process(
                        config, controller_kubeconfig(sandbox), log, identity=f"startup-{n}-{r}"
                    ) as ctl:
                        results[n].append(await ctl.wait_ready(60))
                    print(f"N={n} run {r}: /readyz after {results[n][-1]:.3f}s", flush=True)
                if args.profile and n == max(args.sizes):
                    log = work / f"controller-{n}-profile.log"
                    async with controller_process(
                        config, controller_kubeconfig(sandbox), log, identity=f"startup-{n}-p"
                    ) as ctl:
                        seconds = int(median(results[n]) + 2)
                        spy = asyncio.create_task(profile(ctl.pid, f"startup-{n}", seconds))
                        await ctl.wait_ready(60)
                        files = await spy
                    print(f"profiles: {', '.join(files)}")
                    raw = PROFILES / f"startup-{n}.txt"
                    if raw.exists():
                        for frame, share in top_frames(raw):
                            print(f"  {share:6.1%}  {frame}")
    load_line = await loads.stop()
    print()
    rows = []
    for module, (cumulative, wall) in imports.items():
        rows.append((f"import {module} (-X importtime)", spread(cumulative), "-", "-"))
        rows.append((f"import {module} (wall - bare python)", spread(wall), "-", "-"))
    for n, values in results.items():
        target = "< 2 s" if n >= 500 else "-"
        met = ("yes" if median(values) < 2.0 else "NO") if n >= 500 else "-"
        rows.append((f"spawn -> /readyz 200, {n} rollouts", spread(values), target, met))
    print(table(("figure (s)", "median [min..max]", "target", "met"), rows))
    print()
    biggest = biggest_imports("controller.shell.daemon")
    print("largest imports under controller.shell.daemon (cumulative s):")
    print("  " + ", ".join(f"{k} {v:.3f}" for k, v in biggest))
    print(load_line)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="2 repeats")
    parser.add_argument(
        "--sizes",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[1, 500],
        help="rollout counts (1,500)",
    )
    parser.add_argument("--repeats", type=int, default=5, help="runs per figure (5)")
    parser.add_argument("--profile", action="store_true", help="py-spy one start of the largest N")
    parser.add_argument("--workdir", help="keep the sandbox, configs and logs here")
    args = parser.parse_args()
    if args.quick:
        args.repeats = 2
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
