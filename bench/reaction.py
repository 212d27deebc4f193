"""Reaction time: 502s on the canary mid-hold -> rollback decided -> canary out of the Service.

One sandbox (the seed's zai-proxy world, 4 replicas, 60 req/s) with real Prometheus (scrape 1 s)
and `ptc run` as a subprocess. The rollout holds at 50 % for an hour, with one metric (502 ratio
> 5 % for F) evaluated every I over a W window. Per trial, at a random moment 2-7 s into a hold
with healthy data, the canary starts answering 50 % 502s, and the bench records:

  a  the first moment the breaching value is queryable (the controller's own PromQL, polled
     every 100 ms from the bench)
  b  the `rollback` decision record's time in the Service's state annotation
  c  the first moment the Service's EndpointSlices list no Ready canary pod

Reset between trials: the controller is stopped, faults cleared, the bench waits until the
rolled-back canary's series have left the query window (the pod-name regex would match them),
writes `ptc retry` (the command annotation, in-process), and a fresh controller applies it; the
retry scales up new canary pods. A fresh process per trial because a running controller reuses
the rolled-back attempt's last analysis report and rolls the retry back at once (try
--reuse-controller to see it).

Usage: python bench/reaction.py [--quick] [--trials N] [--interval I] [--for F] [--window W]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    COMMAND_ANNOTATION,
    ControllerProcess,
    LoadSampler,
    bench_sandbox,
    controller_kubeconfig,
    controller_process,
    machine,
    median,
    parse_time,
    percentile,
    prometheus_value,
    table,
    write_config,
)
from bench.fleet import state_of
from controller.core.analysis.templates import QueryContext
from controller.core.config.model import Config, Side
from controller.sandbox.rollouts import bad_gateway_ratio, zai_proxy_rollout
from controller.sandbox.scenarios import zai_proxy_scenario
from controller.sandbox.world import Sandbox

NS, SERVICE, STABLE, CANARY = "devpod", "zai-proxy", "zai-proxy", "zai-proxy-v2"
THRESHOLD = 0.05
SCRAPE = 1.0
POLL_PROMETHEUS = 0.1
POLL_ENDPOINTS = 0.01


def rollout_spec(interval: float, for_: float, window: float) -> dict[str, Any]:
    return zai_proxy_rollout(
        steps=[{"weight": 50, "hold": "1h"}],
        analysis={
            "interval": f"{interval:g}s",
            "window": f"{window:g}s",
            "minRequests": 5,
            "maxHold": "1h",
            "onInconclusive": "hold",
            "metrics": [bad_gateway_ratio(THRESHOLD, f"{for_:g}s")],
        },
        rollback={"cooldown": "1s", "maxAttempts": 1000},
    )


def canary_query(document: dict[str, Any]) -> str:
    """The controller's own PromQL for the canary side of the 502 ratio."""
    config = Config.model_validate(document)
    rollout = config.rollouts[0]
    analysis = rollout.step_analysis(0)
    metric = analysis.metrics[0]
    return QueryContext(rollout, analysis.window).compile(metric, Side.CANARY).value


def ready_canary_endpoints(sandbox: Sandbox) -> int:
    slices = sandbox.api.list(
        "endpointslices", NS, label_selector=f"kubernetes.io/service-name={SERVICE}"
    )
    return sum(
        1
        for s in slices
        for e in s.get("endpoints") or ()
        if (e.get("conditions") or {}).get("ready")
        and ((e.get("targetRef") or {}).get("name") or "").startswith(f"{CANARY}-")
    )


async def wait_state(
    sandbox: Sandbox, predicate: Any, timeout: float, what: str, poll: float = 0.05
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        state = state_of(sandbox, NS, SERVICE)
        if state is not None and predicate(state):
            return state
        if time.monotonic() > deadline:
            brief = state and (state.get("phase"), state.get("step"), state.get("message"))
            raise TimeoutError(f"timed out waiting for {what}; last state {brief}")
        await asyncio.sleep(poll)


async def first_breach(session: aiohttp.ClientSession, url: str, query: str) -> float:
    """Wall time of the first poll answer with a breaching value."""
    while True:
        value = await prometheus_value(session, url, query)
        if value is not None and value > THRESHOLD:
            return time.time()
        await asyncio.sleep(POLL_PROMETHEUS)


async def canary_gone(sandbox: Sandbox) -> float:
    while True:
        if ready_canary_endpoints(sandbox) == 0:
            return time.time()
        await asyncio.sleep(POLL_ENDPOINTS)


async def trial(
    k: int,
    sandbox: Sandbox,
    session: aiohttp.ClientSession,
    query: str,
    rng: random.Random,
) -> dict[str, float]:
    assert sandbox.prometheus is not None
    url = sandbox.prometheus.url
    attempt = k + 1
    await wait_state(
        sandbox,
        lambda s: (
            s.get("attempt", 1) == attempt
            and s["phase"] in ("progressing", "holding")
            and s.get("hold") is not None
        ),
        120,
        f"trial {k}: step reached",
    )
    # A hold with data: the canary's ratio is queryable and healthy.
    deadline = time.monotonic() + 60
    while True:
        value = await prometheus_value(session, url, query)
        if value is not None and value <= THRESHOLD and ready_canary_endpoints(sandbox) > 0:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"trial {k}: no healthy canary data (last {value})")
        await asyncio.sleep(0.2)
    await asyncio.sleep(rng.uniform(2.0, 7.0))
    injected = time.time()
    sandbox.faults.update(NS, CANARY, error_502=0.5)
    breach = asyncio.create_task(first_breach(session, url, query))
    gone = asyncio.create_task(canary_gone(sandbox))
    try:
        state = await wait_state(
            sandbox,
            lambda s: any(
                h["decision"] == "rollback" and parse_time(h["at"]) >= injected - 0.5
                for h in s.get("history", ())
            ),
            90,
            f"trial {k}: rollback decision",
            poll=0.02,
        )
        a = await asyncio.wait_for(breach, 30)
        c = await asyncio.wait_for(gone, 60)
    finally:
        breach.cancel()
        gone.cancel()
    b = max(
        parse_time(h["at"])
        for h in state["history"]
        if h["decision"] == "rollback" and parse_time(h["at"]) >= injected - 0.5
    )
    await wait_state(sandbox, lambda s: s["phase"] == "rolled-back", 90, f"trial {k}: rolled back")
    return {"injected": injected, "a": a, "b": b, "c": c}


async def reset(k: int, sandbox: Sandbox, session: aiohttp.ClientSession, query: str) -> None:
    """Faults off; once the old canary's 502s left the window, `ptc retry`."""
    assert sandbox.prometheus is not None
    sandbox.faults.clear(NS, CANARY)
    # The canary's pod-name regex still matches the rolled-back pods' series until they are out
    # of the query window: a retry before that is judged (and failed) on the old 502s.
    deadline = time.monotonic() + 120
    while await prometheus_value(session, sandbox.prometheus.url, query) is not None:
        if time.monotonic() > deadline:
            raise TimeoutError("old canary series still in the window after 120 s")
        await asyncio.sleep(0.5)
    command = {"kind": "retry", "id": f"bench-retry-{k}", "by": "bench"}
    sandbox.api.patch(
        "services",
        SERVICE,
        {"metadata": {"annotations": {COMMAND_ANNOTATION: json.dumps(command)}}},
        NS,
    )


async def run(args: argparse.Namespace) -> int:
    interval, for_, window = args.interval, args.for_, args.window
    rng = random.Random(args.seed)
    print(f"machine: {machine()}")
    print(
        f"setup: interval I={interval:g}s, for F={for_:g}s, window W={window:g}s, "
        f"scrape {SCRAPE:g}s, {args.trials} trials, 50% 502s injected on the canary"
    )
    loads = LoadSampler()
    loads.start()
    results: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="ptc-bench-reaction-") as tmp:
        work = Path(args.workdir or tmp)
        async with bench_sandbox(work / "sandbox", scrape_interval=SCRAPE) as sandbox:
            assert sandbox.prometheus is not None
            await zai_proxy_scenario(
                sandbox,
                stable_replicas=4,
                canary_rate_limit_initial=500,
                stable_rate_limit_initial=500,
            )
            spec = rollout_spec(interval, for_, window)
            config = write_config(work / "config.yaml", sandbox.prometheus.url, [spec])
            query = canary_query(json.loads(config.read_text()))
            print(f"query: {query}")
            log = work / "controller.shell.log"
            kubeconfig = controller_kubeconfig(sandbox)
            async with contextlib.AsyncExitStack() as stack:
                session = await stack.enter_async_context(
                    aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
                )
                shared: ControllerProcess | None = None
                if args.reuse_controller:
                    shared = await stack.enter_async_context(
                        controller_process(config, kubeconfig, log, identity="bench")
                    )
                    await shared.wait_ready(60)
                for k in range(args.trials):
                    async with contextlib.AsyncExitStack() as per_trial:
                        # By default a fresh controller per trial: a running one keeps the
                        # rolled-back attempt's failing analysis report and rolls the retry back
                        # at once (see --reuse-controller).
                        ctl: ControllerProcess = (
                            shared
                            if shared is not None
                            else await per_trial.enter_async_context(
                                controller_process(config, kubeconfig, log, identity=f"bench-{k}")
                            )
                        )
                        if shared is None:
                            await ctl.wait_ready(60)
                        try:
                            r = await asyncio.wait_for(trial(k, sandbox, session, query, rng), 300)
                        except TimeoutError as exc:
                            print(f"trial {k}: {exc}\n{ctl.tail()}", file=sys.stderr)
                            break
                    results.append(r)
                    await reset(k, sandbox, session, query)
                    print(
                        f"trial {k:2d}: a-inj {r['a'] - r['injected']:6.2f}s  "
                        f"b-a-F {r['b'] - r['a'] - for_:6.2f}s  c-b {r['c'] - r['b']:6.3f}s  "
                        f"c-inj {r['c'] - r['injected']:6.2f}s",
                        flush=True,
                    )
    load_line = await loads.stop()
    if not results:
        print("no trial completed")
        return 1
    # Detection needs two samples of the new 502 series for rate() (the 5 % threshold is far
    # below the injected 50 %, so the W window does not have to fill): 2 scrapes.
    bound = for_ + interval + 2 * SCRAPE
    decision = [r["b"] - r["a"] - for_ for r in results]
    actuation = [r["c"] - r["b"] for r in results]
    detect = [r["a"] - r["injected"] for r in results]
    total = [(r["c"] - r["injected"]) / bound for r in results]
    rows = [
        ("a - injection (s)", median(detect), percentile(detect, 95), "-", "-"),
        ("b - a - F  decision (s)", median(decision), percentile(decision, 95), f"< {interval:g}",
         _ok(median(decision) < interval)),
        ("c - b  actuation (s)", median(actuation), percentile(actuation, 95), "< 0.5",
         _ok(median(actuation) < 0.5)),
        ("(c - injection) / bound", median(total), percentile(total, 95), "<= 1",
         _ok(median(total) <= 1)),
    ]  # fmt: skip
    print()
    print(table(("figure", "median", "p95", "target", "met"), rows))
    print(
        f"bound = F + I + 2 x scrape = {bound:g}s; decision spread "
        f"[{min(decision):.2f}..{max(decision):.2f}]s; {len(results)} trials; {load_line}"
    )
    return 0


def _ok(flag: bool) -> str:
    return "yes" if flag else "NO"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="3 trials")
    parser.add_argument("--trials", type=int, default=20, help="trials (20)")
    parser.add_argument("--interval", type=float, default=2.0, help="analysis interval I, s (2)")
    parser.add_argument("--for", dest="for_", type=float, default=4.0, help="breach for F, s (4)")
    parser.add_argument("--window", type=float, default=10.0, help="query window W, s (10)")
    parser.add_argument("--seed", type=int, default=20261127)
    parser.add_argument(
        "--reuse-controller", action="store_true", help="one controller for all trials"
    )
    parser.add_argument("--workdir", help="keep the sandbox, config and controller log here")
    args = parser.parse_args()
    if args.quick:
        args.trials = 3
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
