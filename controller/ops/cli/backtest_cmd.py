"""`ptc backtest`: would this config have caught it? Replays a rollout's analysis over the past."""

from __future__ import annotations

import argparse
import json
import re
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from controller.core.config import ConfigError
from controller.core.config.model import DNS_LABEL, DNS_SUBDOMAIN, Config, Rollout
from controller.ops.cli.common import EXIT_BAD_INPUT, EXIT_OK, EXIT_RUNTIME, UsageError, _load
from controller.ops.cli.common import _print_problems as print_problems

if TYPE_CHECKING:
    from controller.ops.backtest import BacktestResult, Bindings
    from controller.ops.backtest.run import Progress

DESCRIPTION = (
    "Replay a rollout's analysis over a past period: at every evaluation tick between --from "
    "and --to, the controller's own runner and evaluator (for:, minRequests, compare-vs-stable, "
    "the capacity gate) judge what Prometheus held then, as if the rollout had stood at one step "
    "the whole time. Prints every tick's verdicts, when each metric first passed, held and "
    "failed, and the moment ptc would have rolled back (or paused at maxHold). Each compiled "
    "query is fetched once with query_range at the ticks as steps. Reads the config and "
    "Prometheus only: no Kubernetes access, nothing written. Exit 0 done (whatever the verdicts), "
    "1 Prometheus unreachable/slow or --timeout, 2 bad input."
)
EPILOG = """\
series: by default the rollout's Deployment names give the pod regexes, as the controller
derives them. --deployments STABLE CANARY uses other Deployments' pods; --canary/--stable/
--service bind one side to a pod regex ('zai-proxy-v3-.*') or to PromQL label matchers
('pod=~"zai-proxy-v3-.*",namespace="devpod"', replacing that side's {{ selector }}).

times: RFC 3339 (2026-01-13T14:00:00Z; without an offset UTC), Unix seconds, now, now-2h.

example:
  ptc backtest --config config/zai-proxy.yaml --rollout zai-proxy \\
      --from 2026-01-13T14:00:00Z --to 2026-01-13T15:00:00Z \\
      --prometheus-url http://localhost:9090 -o table
"""


def _rollout(config: Config, name: str | None) -> Rollout:
    if name is None:
        if len(config.rollouts) == 1:
            return config.rollouts[0]
        known = ", ".join(r.name for r in config.rollouts) or "none"
        raise UsageError(f"--rollout is required (rollouts in this file: {known})")
    try:
        return config.rollout(name)
    except KeyError as exc:
        raise UsageError(str(exc.args[0])) from None


def _retarget(rollout: Rollout, args: argparse.Namespace) -> Rollout:
    """The rollout with --namespace and --deployments applied."""
    if args.namespace is not None:
        if not re.match(DNS_LABEL, args.namespace):
            raise UsageError(f"--namespace {args.namespace!r} is not a Kubernetes namespace name")
        rollout = rollout.model_copy(update={"namespace": args.namespace})
    if args.deployments:
        stable, canary = args.deployments
        for name in (stable, canary):
            if not re.match(DNS_SUBDOMAIN, name):
                raise UsageError(f"--deployments: {name!r} is not a Deployment name")
        rollout = rollout.model_copy(
            update={
                "stable": rollout.stable.model_copy(update={"deployment": stable}),
                "canary": rollout.canary.model_copy(update={"deployment": canary}),
            }
        )
    return rollout


def _bindings(args: argparse.Namespace) -> Bindings:
    from controller.ops.backtest import Bindings, SelectorError, parse_side
    from controller.ops.backtest.selectors import SideBinding

    sides = {"canary": args.canary, "stable": args.stable, "service": args.service}
    if args.deployments and any(v is not None for v in sides.values()):
        raise UsageError("--deployments and --canary/--stable/--service exclude each other")
    try:
        bound = {
            side: parse_side(text, f"--{side}") if text is not None else SideBinding()
            for side, text in sides.items()
        }
    except SelectorError as exc:
        raise UsageError(str(exc)) from None
    return Bindings(**bound)


@contextmanager
def _progress(enabled: bool) -> Iterator[Progress | None]:
    """A progress display on stderr when it is a terminal (nothing otherwise)."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import Progress as Bar

    with Bar(console=Console(stderr=True), transient=True) as bar:
        tasks: dict[str, object] = {}

        def update(phase: str, done: int, total: int) -> None:
            label = "fetching range queries" if phase == "fetch" else "evaluating ticks"
            if phase not in tasks:
                tasks[phase] = bar.add_task(label, total=total)
            bar.update(tasks[phase], completed=done)  # type: ignore[arg-type]

        yield update


def cmd_backtest(args: argparse.Namespace) -> int:
    """Run a backtest and print it as a table, JSON or HTML."""
    import asyncio

    from controller.core.durations import parse_duration
    from controller.ops.backtest import BacktestInputError, make_spec, parse_time
    from controller.ops.backtest.fetch import FetchError, url_problem
    from controller.ops.backtest.run import BacktestTimeout, run_backtest
    from controller.shell.log import configure_logging

    if args.timeout <= 0:
        raise UsageError("--timeout must be positive")
    if not 400 <= args.width <= 10000:
        raise UsageError("--width must be 400..10000 pixels")
    try:
        configure_logging("auto", args.log_level)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    try:
        loaded = _load(args.config)
    except ConfigError as exc:
        print_problems(exc.problems, sys.stderr)
        return EXIT_BAD_INPUT
    config = loaded.config
    rollout = _retarget(_rollout(config, args.rollout), args)
    bindings = _bindings(args)
    settings = config.prometheus
    if args.prometheus_url:
        settings = settings.model_copy(update={"url": args.prometheus_url})
    problem = url_problem(settings.url)
    if problem is not None:
        where = "--prometheus-url" if args.prometheus_url else f"{args.config}: prometheus.url"
        raise UsageError(f"{where} {settings.url!r}: {problem}")
    now = datetime.now(UTC)
    try:
        every = parse_duration(args.step) if args.step is not None else None
    except ValueError as exc:
        raise UsageError(f"--step: {exc}") from None
    try:
        spec = make_spec(
            rollout,
            parse_time(args.start, now, "--from"),
            parse_time(args.end, now, "--to"),
            step=args.at_step,
            every=every,
            bindings=bindings,
        )
    except BacktestInputError as exc:
        raise UsageError(str(exc)) from None

    async def run() -> BacktestResult:
        with _progress(sys.stderr.isatty() and args.output != "json") as progress:
            try:
                # A backstop only: fetch and replay keep the deadline themselves.
                async with asyncio.timeout(args.timeout + 2):
                    return await run_backtest(
                        spec, settings, timeout=args.timeout, progress=progress, now=now
                    )
            except TimeoutError:
                raise BacktestTimeout(
                    f"the backtest did not finish within --timeout {args.timeout:g}s"
                ) from None

    try:
        result = asyncio.run(run())
    except (FetchError, BacktestTimeout) as exc:
        print(f"ptc backtest: {exc}", file=sys.stderr)
        return EXIT_RUNTIME
    return _print(result, args)


def _print(result: BacktestResult, args: argparse.Namespace) -> int:
    from controller.ops.backtest.render import render_table, to_json

    if args.output == "json":
        print(json.dumps(to_json(result), indent=2))
    elif args.output == "html":
        from controller.ops.backtest.html import render_backtest_html

        sys.stdout.write(render_backtest_html(result, width=args.width))
    else:
        print(render_table(result))
    return EXIT_OK


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `ptc backtest`."""
    p = sub.add_parser(
        "backtest",
        help="replay a rollout's analysis over a past period: would it have rolled back, when?",
        description=textwrap.fill(DESCRIPTION, 90),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", "-c", required=True, metavar="FILE", help="the ptc config file")
    p.add_argument(
        "--rollout", "-r", metavar="NAME", help="the rollout (optional when the file has one)"
    )
    p.add_argument("--from", dest="start", required=True, metavar="TIME", help="period start")
    p.add_argument("--to", dest="end", required=True, metavar="TIME", help="period end")
    p.add_argument(
        "--at-step",
        type=int,
        default=1,
        metavar="N",
        help="judge as at step N (1-based): its analysis override and, for the capacity gate, "
        "the next step's weight (1)",
    )
    p.add_argument(
        "--step",
        metavar="DURATION",
        help="tick spacing (default: the analysis interval); coarsen long periods with it",
    )
    p.add_argument("--namespace", "-n", help="the pods' namespace (default: the rollout's)")
    p.add_argument(
        "--deployments",
        nargs=2,
        metavar=("STABLE", "CANARY"),
        help="derive the sides' pod regexes from these Deployment names instead",
    )
    p.add_argument("--canary", metavar="SEL", help="canary's pods: a pod regex or label matchers")
    p.add_argument("--stable", metavar="SEL", help="stable's pods: a pod regex or label matchers")
    p.add_argument(
        "--service", metavar="SEL", help="all pods behind the Service (capacity gate's demand)"
    )
    p.add_argument("--prometheus-url", metavar="URL", help="overrides the config's prometheus.url")
    p.add_argument(
        "--output",
        "-o",
        choices=("table", "json", "html"),
        default="table",
        help="table (a row per tick), json (every tick) or one HTML page, to stdout (table)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        help="seconds for the whole backtest, queries included (120)",
    )
    p.add_argument("--width", type=int, default=1600, help="HTML chart width in pixels (1600)")
    p.add_argument(
        "--log-level",
        default="error",
        help="log level on stderr (error; info logs each tick's evaluation)",
    )
    p.set_defaults(func=cmd_backtest)


__all__ = ["register"]
