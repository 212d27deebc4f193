"""`ptc status`, the manual commands and `ptc report`: operating running rollouts."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable
from typing import Any, TypeVar

from rich.console import Console

from controller.core.config import ConfigError
from controller.ops.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_OK,
    EXIT_RUNTIME,
    UsageError,
    _load,
    _print_problems,
    require_extra,
)

T = TypeVar("T")


def cmd_command(args: argparse.Namespace) -> int:
    """Send a manual command to a running controller and wait for its acknowledgement."""
    import asyncio

    from controller.core.rollout import CommandKind
    from controller.shell.command_annotation import CommandError, RolloutNotFound, send_command
    from controller.shell.kube import KubeError

    if not 0 < args.timeout <= MAX_TIMEOUT:
        raise UsageError(f"--timeout must be in (0, {MAX_TIMEOUT:g}] seconds")
    try:
        result = asyncio.run(
            _bounded(
                send_command(
                    CommandKind(args.command),
                    args.rollout,
                    args.namespace,
                    kubeconfig=args.kubeconfig,
                    timeout=args.timeout,
                    by=args.by,
                ),
                args.timeout,
            )
        )
    except TimeoutError:
        print(f"ptc {args.command}: {_no_answer(args.timeout)}", file=sys.stderr)
        return EXIT_RUNTIME
    except RolloutNotFound as exc:
        print(f"ptc {args.command}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (CommandError, KubeError) as exc:
        print(f"ptc {args.command}: {exc}", file=sys.stderr)
        return EXIT_RUNTIME
    verdict = "applied" if result.applied else "refused"
    print(f"{args.command} {verdict}: rollout {args.rollout} is {result.phase}: {result.message}")
    return EXIT_OK if result.applied else EXIT_RUNTIME


def cmd_status(args: argparse.Namespace) -> int:
    """Show rollouts: once, or live with --watch."""
    import asyncio

    from controller.ops.status_source import StatusError
    from controller.shell.kube import KubeError

    if args.interval <= 0:
        raise UsageError("--interval must be positive")
    if not 0 < args.timeout <= MAX_TIMEOUT:
        raise UsageError(f"--timeout must be in (0, {MAX_TIMEOUT:g}] seconds")
    try:
        return asyncio.run(_status(args))
    except TimeoutError:
        print(f"ptc status: {_no_answer(args.timeout)}", file=sys.stderr)
        return EXIT_RUNTIME
    except StatusError as exc:
        print(f"ptc status: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT if "no rollout named" in str(exc) else EXIT_RUNTIME
    except KubeError as exc:
        print(f"ptc status: Kubernetes API: {exc}", file=sys.stderr)
        return EXIT_RUNTIME


async def _status(args: argparse.Namespace) -> int:
    import asyncio
    import contextlib
    from datetime import UTC, datetime

    from rich.console import Group
    from rich.live import Live

    from controller.ops.status_source import ClusterStatus, controller_document, select
    from controller.ops.status_view import decisions_table, shards_table, status_table
    from controller.shell.kube import Kube

    kube: Kube | None = None
    cluster: ClusterStatus | None = None
    try:
        if not args.controller:
            # Connecting, the API server's retries and the first list: all within --timeout.
            async with asyncio.timeout(args.timeout):
                kube = await Kube.connect(args.kubeconfig)
                cluster = await _cluster_status(kube, args.namespace)

        sharded: dict[str, Any] = {}  # a sharded controller's shards and holders

        async def fetch() -> list[dict[str, Any]]:
            if cluster is not None:
                return select(await cluster.documents(), args.rollout)
            async with asyncio.timeout(args.timeout):
                body = await controller_document(args.controller)
            sharded.clear()
            sharded.update(body.get("controller") or {})
            return select(body.get("rollouts", []), args.rollout)

        def extra() -> list[Any]:
            return [shards_table(sharded)] if sharded.get("shards") else []

        console = Console(no_color=args.no_color, highlight=False)
        if not console.is_terminal:
            console = Console(no_color=True, highlight=False, width=max(console.width, 140))
        if not args.watch:
            docs = await fetch()
            if args.output == "json":
                print(json.dumps(docs if args.rollout is None else docs[0], indent=2))
            elif args.output == "yaml":
                _print_yaml(docs if args.rollout is None else docs[0])
            else:
                now = datetime.now(UTC)
                console.print(status_table(docs, now))
                for table in extra():
                    console.print(table)
                for doc in docs:
                    console.print(decisions_table(doc))
            return EXIT_OK
        with Live(console=console, auto_refresh=False, transient=False) as live:
            while True:
                docs = await fetch()
                now = datetime.now(UTC)
                live.update(
                    Group(status_table(docs, now), *extra(), *(decisions_table(d) for d in docs)),
                    refresh=True,
                )
                if cluster is not None:
                    cluster.changed.clear()
                    # Woken by a watch event, or after the interval for the hold countdown.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(cluster.changed.wait(), timeout=args.interval)
                else:
                    await asyncio.sleep(args.interval)
    except KeyboardInterrupt:
        return EXIT_OK
    finally:
        if kube is not None:
            await kube.close()


async def _cluster_status(kube: Any, namespace: str) -> Any:
    from controller.ops.status_source import ClusterStatus

    cluster = ClusterStatus(kube, namespace)
    await cluster.start()
    return cluster


MAX_TIMEOUT = 3600.0


async def _bounded(awaitable: Awaitable[T], seconds: float) -> T:
    """`awaitable` within `seconds`, connecting and retries included; TimeoutError past it."""
    async with asyncio.timeout(seconds):
        return await awaitable


def _no_answer(seconds: float) -> str:
    return (
        f"no answer within --timeout {seconds:g}s (connecting to the Kubernetes API included); "
        "check the kubeconfig's server and that the API server answers"
    )


def _print_yaml(data: Any) -> None:
    from controller.core.config.yamlwrite import dump_yaml

    sys.stdout.write(dump_yaml(data))


def cmd_report(args: argparse.Namespace) -> int:
    """Write a rollout's timeline (decisions, weight, metrics) as HTML, PNG or SVG."""
    import asyncio

    require_extra("matplotlib", "report", "ptc report")
    from controller.ops.report.command import make_report
    from controller.ops.report.errors import BadReportRequest, ReportError
    from controller.ops.report.fetch import ReportRequest

    if args.timeout <= 0:
        raise UsageError("--timeout must be positive")
    config = None
    if args.config:
        try:
            loaded = _load(args.config)
        except ConfigError as exc:
            _print_problems(exc.problems, sys.stderr)
            return EXIT_BAD_INPUT
        config = loaded.config
    request = ReportRequest(
        rollout=args.rollout,
        namespace=args.namespace,
        kubeconfig=args.kubeconfig,
        config=config,
        prometheus_url=args.prometheus_url,
        use_prometheus=args.prometheus,
        timeout=args.timeout,
    )
    try:
        written = asyncio.run(
            make_report(request, args.output, width=args.width, height=args.height)
        )
    except BadReportRequest as exc:
        print(f"ptc report: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (ReportError, OSError) as exc:
        print(f"ptc report: {exc}", file=sys.stderr)
        return EXIT_RUNTIME
    for path in written:
        print(f"wrote {path}")
    return EXIT_OK


COMMAND_HELP = {
    "promote": "skip the current hold, gate or bake and go on",
    "abort": "roll back now",
    "pause": "stop progressing (analysis still rolls back on a breach)",
    "resume": "go on after a pause",
    "retry": "start again after a rollback (cooldown and maxAttempts apply) or a failure; "
    "after a preflight failure at once, using no attempt",
}


def _command_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("rollout", metavar="ROLLOUT", help="the rollout's name in the config")
    p.add_argument("--namespace", "-n", default="default", help="its namespace (default)")
    p.add_argument("--kubeconfig", metavar="FILE", help="kubeconfig (default: in-cluster)")
    p.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="seconds for the whole command: connecting, sending, the ack (30)",
    )
    p.add_argument("--by", help="who gives the command (default: user@host)")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this module's subcommands."""
    p = sub.add_parser(
        "status",
        help="show rollouts: phase, step, weights, hold, analysis, why waiting",
        description=(
            "Show each rollout's phase, step k/n, desired vs actual weight, a progress bar for "
            "the current hold, its analysis values against thresholds (✓ pass, ✗ fail, "
            "? inconclusive, ! error), what it waits on, and its last decisions. Reads the state "
            "from the cluster (the Services' ptc.dev/state annotations and the Deployments), or "
            "from a controller's /api/v1/rollouts with --controller (which adds live analysis)."
        ),
    )
    p.add_argument("rollout", nargs="?", metavar="ROLLOUT", help="only this rollout")
    p.add_argument("--namespace", "-n", default="default", help="namespace to read (default)")
    p.add_argument("--kubeconfig", metavar="FILE", help="kubeconfig (default: in-cluster)")
    p.add_argument("--controller", metavar="URL", help="read from a controller's HTTP API")
    p.add_argument("--output", "-o", choices=("table", "json", "yaml"), default="table")
    p.add_argument("--watch", "-w", action="store_true", help="update in place until Ctrl-C")
    p.add_argument("--interval", type=float, default=1.0, help="--watch refresh in seconds (1)")
    p.add_argument("--no-color", action="store_true", help="plain text")
    p.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="seconds to connect and read (each refresh with --watch) (30)",
    )
    p.set_defaults(func=cmd_status)

    for name, summary in COMMAND_HELP.items():
        p = sub.add_parser(
            name,
            help=summary,
            description=(
                f"{summary[0].upper()}{summary[1:]}. Writes the ptc.dev/command annotation on "
                "the rollout's Service and waits until the controller acknowledges it in the "
                "state, then prints the phase. Exit 0 applied, 1 refused or not acknowledged, "
                "2 unknown rollout."
            ),
        )
        _command_args(p)
        p.set_defaults(func=cmd_command)

    p = sub.add_parser(
        "report",
        help="write a rollout's timeline (weight, metrics, decisions) as HTML or PNG",
        description=(
            "Write a rollout's timeline for postmortems from the decision history in its "
            "Service's ptc.dev/state annotation: canary weight over time, each analysis metric "
            "against its threshold, and every decision (steps, holds, pauses, commands and who "
            "gave them, flip, bake, rollback). With --prometheus-url (or --config) the actual "
            "weight and the metrics' range series are added. FILE.html is one self-contained "
            "page (chart + decision table, no network needed); FILE.png / FILE.svg the chart. "
            "Exit 0 written, 1 runtime failure, 2 bad input or unknown rollout."
        ),
    )
    p.add_argument("rollout", metavar="ROLLOUT", help="the rollout's name in the config")
    p.add_argument(
        "--output",
        "-o",
        action="append",
        required=True,
        metavar="FILE",
        help="FILE.html, FILE.png or FILE.svg (repeat for several)",
    )
    p.add_argument("--namespace", "-n", help="its namespace (default: the config's, else default)")
    p.add_argument("--kubeconfig", metavar="FILE", help="kubeconfig (default: in-cluster)")
    p.add_argument(
        "--config",
        metavar="FILE",
        help="config file: per-step weights, metric queries and prometheus.url",
    )
    p.add_argument("--prometheus-url", metavar="URL", help="Prometheus for range series")
    p.add_argument(
        "--no-prometheus",
        dest="prometheus",
        action="store_false",
        help="query no Prometheus, even with --config (decision records only)",
    )
    p.add_argument("--width", type=int, default=1600, help="picture width in pixels (1600)")
    p.add_argument("--height", type=int, default=900, help="PNG/SVG height in pixels (900)")
    p.add_argument(
        "--timeout", type=float, default=30.0, help="seconds for the Kubernetes reads (30)"
    )
    p.set_defaults(func=cmd_report)
