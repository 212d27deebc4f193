"""Shared helpers for the benchmark scripts: sandbox fleets, the controller process, statistics.

The benchmarks run the sandbox in the bench process and `ptc run` as a subprocess
(`python -m controller.ops.cli run`) with its own bearer token, so its API requests can be told
apart from the bench's (the bench reads the sandbox in-process, which is not counted at all).
Figures are printed, never asserted: timings on a shared 2-core machine are evidence, not tests.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import math
import os
import shutil
import statistics
import sys
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
from kr8s._api import Api as _KrApi

from controller.sandbox.world import Sandbox
from tests.e2e import harness
from tests.e2e.harness import ControllerProcess, fast_options

REPO = Path(__file__).resolve().parent.parent
PROFILES = REPO / "bench" / "profiles"
CLK_TCK = os.sysconf("SC_CLK_TCK")
STATE_ANNOTATION = "ptc.dev/state"
COMMAND_ANNOTATION = "ptc.dev/command"
CONTROLLER_USER = "ptc-bench-controller"
CONTROLLER_TOKEN = "bench-controller-token"

READS = frozenset({"get", "list"})
WRITES = frozenset({"create", "update", "patch", "delete"})
WATCHES = frozenset({"watch"})


# -- machine and process figures ---------------------------------------------------------------


def machine() -> str:
    """One line: CPU model, cores, Python, load averages now."""
    model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = Path("/proc/loadavg").read_text().split()[:3]
    py = ".".join(map(str, sys.version_info[:3]))
    return f"{os.cpu_count()} cores ({model}), Python {py}, loadavg {' '.join(load)}"


def loadavg1() -> float:
    """The 1-minute load average."""
    return float(Path("/proc/loadavg").read_text().split()[0])


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (its threads included)."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rindex(")") + 2 :].split()
    # after "pid (comm) ": state=0 ... utime=11, stime=12
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def memory_kb(pid: int) -> dict[str, int]:
    """VmHWM (peak RSS) and VmRSS of a process, in kB."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            out[key] = int(value.split()[0])
    return out


@dataclass
class LoadSampler:
    """Samples the 1-minute load average every few seconds while a benchmark runs."""

    every: float = 5.0
    samples: list[float] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            self.samples.append(loadavg1())
            await asyncio.sleep(self.every)

    async def stop(self) -> str:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if not self.samples:
            return "load: no samples"
        return (
            f"loadavg(1m) during run: median {statistics.median(self.samples):.2f}, "
            f"max {max(self.samples):.2f} ({len(self.samples)} samples)"
        )


# -- statistics ------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear interpolation; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


def spread(values: Sequence[float]) -> str:
    """`median [min..max] (n)` for a compact table cell."""
    if not values:
        return "-"
    return f"{median(values):.3f} [{min(values):.3f}..{max(values):.3f}] n={len(values)}"


def linear_fit(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """Least-squares (slope, intercept) of y = a·x + b."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return math.nan, my
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    return slope, my - slope * mx


def loglog_exponent(xs: Sequence[float], ys: Sequence[float]) -> float:
    """k in y ∝ x^k (least squares on logs; pairs with y <= 0 are left out)."""
    pairs = [(math.log(x), math.log(y)) for x, y in zip(xs, ys, strict=True) if x > 0 and y > 0]
    if len(pairs) < 2:
        return math.nan
    return linear_fit([p[0] for p in pairs], [p[1] for p in pairs])[0]


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A plain fixed-width table."""
    cells = [[str(h) for h in headers]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.3f}"
    return str(value)


def split_requests(counts: dict[tuple[str, str, str, str], int], user: str) -> dict[str, int]:
    """A request_counts() snapshot of one user, split into reads / writes / watches / other."""
    out = {"reads": 0, "writes": 0, "watches": 0, "other": 0}
    for (verb, _group, _resource, who), n in counts.items():
        if who != user:
            continue
        if verb in READS:
            out["reads"] += n
        elif verb in WRITES:
            out["writes"] += n
        elif verb in WATCHES:
            out["watches"] += n
        else:
            out["other"] += n
    return out


def counts_of(sandbox: Sandbox) -> dict[tuple[str, str, str, str], int]:
    """The API server's request counters as plain tuples."""
    return {
        (k.verb, k.group, k.resource, k.user): n for k, n in sandbox.api.request_counts().items()
    }


def diff_counts(
    after: dict[tuple[str, str, str, str], int], before: dict[tuple[str, str, str, str], int]
) -> dict[tuple[str, str, str, str], int]:
    return {k: n - before.get(k, 0) for k, n in after.items() if n - before.get(k, 0)}


# -- the sandbox ------------------------------------------------------------------------------


@asynccontextmanager
async def bench_sandbox(
    workdir: Path,
    *,
    prometheus: bool = True,
    scrape_interval: float = 1.0,
    traffic_rate: float = 60.0,
    ready_delay: float = 0.3,
    seed: int = 7,
) -> AsyncIterator[Sandbox]:
    """A sandbox whose API server knows the controller's token (user `CONTROLLER_USER`)."""
    _KrApi._instances.clear()
    # The sandbox logs a traceback for each watch stream cut by a stopping controller.
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
    options = fast_options(
        workdir,
        ready_delay=ready_delay,
        traffic_rate=traffic_rate,
        prometheus=prometheus,
        scrape_interval=scrape_interval,
        seed=seed,
        control_port=None,
    )
    async with Sandbox(options) as sandbox:
        sandbox.api.add_token(CONTROLLER_TOKEN, CONTROLLER_USER)
        sandbox.api.write_kubeconfig(workdir / "controller.kubeconfig", token=CONTROLLER_TOKEN)
        yield sandbox
    _KrApi._instances.clear()


def controller_kubeconfig(sandbox: Sandbox) -> Path:
    return sandbox.workdir / "controller.kubeconfig"


def parse_time(value: str) -> float:
    """An RFC 3339 time from the state as a Unix timestamp."""
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


# -- the controller process ------------------------------------------------------------------


def write_config(path: Path, prometheus_url: str | None, specs: Sequence[dict[str, Any]]) -> Path:
    prometheus = {"url": prometheus_url or "http://127.0.0.1:9", "timeout": "5s"}
    path.write_text(json.dumps({"prometheus": prometheus, "rollouts": list(specs)}))
    return path


@asynccontextmanager
async def controller_process(
    config: Path,
    kubeconfig: Path,
    log: Path,
    *,
    identity: str = "ptc-bench",
    log_level: str = "info",
    args: Sequence[str] = (),
) -> AsyncIterator[ControllerProcess]:
    """Start `ptc run` (the tests' launcher); SIGTERM (then SIGKILL after 20 s) at the end.

    `args`: more `ptc run` flags (a sharded bench passes `--shards`).
    """
    async with harness.controller_process(
        config, kubeconfig, log, identity=identity, args=("--log-level", log_level, *args)
    ) as started:
        yield started


async def prometheus_query_total(session: aiohttp.ClientSession, url: str) -> float:
    """Instant queries Prometheus has answered (its own counter, read from /metrics)."""
    async with session.get(f"{url}/metrics") as response:
        text = await response.text()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("prometheus_http_requests_total{") and 'handler="/api/v1/query"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


async def prometheus_value(session: aiohttp.ClientSession, url: str, query: str) -> float | None:
    """One instant query's single value (None: no data or NaN)."""
    async with session.get(f"{url}/api/v1/query", params={"query": query}) as response:
        body = await response.json()
    result = body.get("data", {}).get("result") or []
    if not result:
        return None
    value = float(result[0]["value"][1])
    return None if math.isnan(value) else value


# -- profiles --------------------------------------------------------------------------------


async def profile(pid: int, name: str, seconds: int) -> list[str]:
    """py-spy collapsed stacks, then a flame graph (SVG), of `pid`; the files written.

    One after the other: two samplers cannot attach at once, and `--nonblocking` loses the
    thread-activity information (every sample then counts as idle).
    """
    spy = shutil.which("py-spy")
    if spy is None:
        return ["py-spy not installed (pip install py-spy)"]
    PROFILES.mkdir(exist_ok=True)
    outputs = []
    for fmt, ext in (("raw", "txt"), ("flamegraph", "svg")):
        out = PROFILES / f"{name}.{ext}"
        proc = await asyncio.create_subprocess_exec(
            spy,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(seconds),
            "--rate",
            "50",
            "--format",
            fmt,
            "-o",
            str(out),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        await proc.wait()
        outputs.append(str(out))
    return outputs


def top_frames(raw: Path, limit: int = 12) -> list[tuple[str, float]]:
    """Leaf frames by share of samples from a py-spy raw (collapsed) profile."""
    self_time: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        self_time[stack.split(";")[-1]] += n
    return [(frame, n / total) for frame, n in self_time.most_common(limit)] if total else []
