"""The controller side of bench/scale.py: one `ptc run`, or K sharded ones, and their figures.

A sharded run starts K `ptc run --shards K` processes (identities `scale-N-r0` …) on the same
config and sandbox, and waits until every shard's Lease is held by one of them, spread evenly
(with K shards over K replicas: one each), before the ramp is timed to its end. Figures are kept
per process (CPU, peak RSS, the analysis from its own log) so the bench can print per-replica
rows and totals.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import (
    controller_kubeconfig,
    controller_process,
    cpu_seconds,
    median,
    memory_kb,
    percentile,
    write_config,
)
from bench.fleet import FleetMember, fleet_spec
from controller.core.sharding import shard_lease_name, shard_of
from tests.e2e.harness import ControllerProcess

LEASE_NAME = "ptc-leader"  # `ptc run`'s default; shard i's Lease is ptc-leader-shard-i


@dataclass
class Controllers:
    """The controller processes of one size: one, or one per replica in a sharded run."""

    procs: list[ControllerProcess]
    identities: list[str]
    logs: list[Path]
    led_s: float = math.nan  # sharded: spawn to every shard led and spread evenly
    rollouts_each: list[int] | None = None  # sharded: rollouts in the shards each one leads

    @property
    def pids(self) -> list[int]:
        return [c.pid for c in self.procs]

    def cpu_each(self) -> list[float]:
        return [cpu_seconds(pid) for pid in self.pids]

    def cpu(self) -> float:
        return sum(self.cpu_each())

    def rss_kb(self) -> int:
        return sum(memory_kb(pid)["VmRSS"] for pid in self.pids)

    def hwm_kb_each(self) -> list[int]:
        return [memory_kb(pid)["VmHWM"] for pid in self.pids]

    def hwm_kb(self) -> int:
        return sum(self.hwm_kb_each())


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


def shard_holders(sandbox: Any, namespace: str, shards: int) -> list[str | None]:
    """Each shard Lease's holder as the API server has it (None: no Lease or no holder)."""
    out: list[str | None] = []
    for i in range(shards):
        try:
            lease = sandbox.api.get("leases", shard_lease_name(LEASE_NAME, i), namespace)
        except Exception:  # the sandbox raises its own NotFound; not created yet
            out.append(None)
            continue
        out.append((lease.get("spec") or {}).get("holderIdentity"))
    return out


def spread_evenly(holders: Sequence[str | None], identities: Sequence[str]) -> bool:
    """Every shard held by one of ours, each replica within one shard of every other."""
    if any(h not in identities for h in holders):
        return False
    counts = [sum(1 for h in holders if h == ident) for ident in identities]
    return max(counts) - min(counts) <= 1


async def wait_shards_led(
    sandbox: Any, namespace: str, shards: int, identities: Sequence[str], timeout: float
) -> list[str | None]:
    """Wait until every shard is led and spread evenly; the holders (TimeoutError if not)."""
    deadline = time.monotonic() + timeout
    while True:
        holders = shard_holders(sandbox, namespace, shards)
        if spread_evenly(holders, identities):
            return holders
        if time.monotonic() > deadline:
            raise TimeoutError(f"shards not led and spread after {timeout:.0f}s: {holders}")
        await asyncio.sleep(0.2)


@asynccontextmanager
async def start_controllers(
    work: Path,
    sandbox: Any,
    members: Sequence[FleetMember],
    n: int,
    ready_timeout: float,
    shards: int = 0,
    run_args: Sequence[str] = (),
) -> AsyncIterator[tuple[Controllers, float]]:
    """Start the controller(s) of size `n`; yields them and seconds to the last /readyz.

    `run_args`: more `ptc run` flags for every process (e.g. longer Lease timings).

    `shards` 0: one `ptc run` (the default bench). K > 0: K `ptc run --shards K` replicas, yielded
    once every shard is led and spread evenly (`Controllers.led_s`).
    """
    assert sandbox.prometheus is not None
    config = fleet_config(work / f"config-{n}.yaml", sandbox.prometheus.url, members)
    kubeconfig = controller_kubeconfig(sandbox)
    if not shards:
        log = work / f"controller-{n}.log"
        async with controller_process(
            config, kubeconfig, log, identity=f"scale-{n}", args=run_args
        ) as ctl:
            ready_s = await ctl.wait_ready(ready_timeout)
            yield Controllers([ctl], [f"scale-{n}"], [log]), ready_s
        return
    lease_ns = members[0].namespace
    identities = [f"scale-{n}-r{i}" for i in range(shards)]
    logs = [work / f"controller-{n}-r{i}.log" for i in range(shards)]
    flags = ("--shards", str(shards), "--leader-namespace", lease_ns, *run_args)
    async with AsyncExitStack() as stack:
        procs = [
            await stack.enter_async_context(
                controller_process(config, kubeconfig, log, identity=ident, args=flags)
            )
            for ident, log in zip(identities, logs, strict=True)
        ]
        ready = await asyncio.gather(*(p.wait_ready(ready_timeout) for p in procs))
        ctls = Controllers(procs, identities, logs)
        holders = await wait_shards_led(sandbox, lease_ns, shards, identities, ready_timeout)
        ctls.led_s = time.monotonic() - min(p.started for p in procs)
        owner = [holders[shard_of(m.namespace, m.service, shards)] for m in members]
        ctls.rollouts_each = [owner.count(ident) for ident in identities]
        yield ctls, max(ready)


@dataclass
class Analysis:
    """What one controller's log says about its evaluations in the measurement window."""

    evaluations: int
    errors: int
    durations: list[float]


def read_analysis(log: Path, offset: int) -> Analysis:
    """The "analysis evaluated" lines of `log` after `offset`."""
    out = Analysis(0, 0, [])
    with log.open("rb") as handle:
        handle.seek(offset)
        for line in handle:
            if b'"analysis evaluated"' not in line:
                continue
            try:
                record = json.loads(line)
            except ValueError:
                continue
            out.evaluations += 1
            out.durations.append(float(record.get("duration_s") or 0.0))
            out.errors += sum(1 for m in record.get("metrics", ()) if m.get("verdict") == "error")
    return out


def analysis_health(parts: Sequence[Analysis]) -> dict[str, float]:
    """Evaluations and metric errors summed over controllers; latency over all evaluations."""
    durations = [d for p in parts for d in p.durations]
    return {
        "evaluations": sum(p.evaluations for p in parts),
        "eval_median_s": median(durations) if durations else math.nan,
        "eval_p95_s": percentile(durations, 95) if durations else math.nan,
        "metric_errors": sum(p.errors for p in parts),
    }


async def readyz_lag(session: aiohttp.ClientSession, url: str) -> dict[str, Any] | None:
    """The controller's own lag summary (None from a controller without one)."""
    try:
        async with session.get(f"{url}/readyz") as response:
            body = await response.json()
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return None
    lag = body.get("lag") if isinstance(body, dict) else None
    return lag if isinstance(lag, dict) else None
