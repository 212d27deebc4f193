"""The `ptc` command line.

Exit codes: 0 ok, 2 bad input (config, arguments), 1 runtime failure. User errors never
surface as tracebacks.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from rich.console import Console
from rich.table import Table

from controller import __version__
from controller.config import ConfigError, LoadedConfig, Rollout, load_config
from controller.config.checks import Severity
from controller.config.schema import schema_json
from controller.durations import format_duration, parse_duration
from controller.plan import Plan, plan_rollout

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_BAD_INPUT = 2


class UsageError(Exception):
    """Bad input from the user: message printed, exit 2."""


def _print_problems(problems: Sequence[object], stream: TextIO) -> None:
    for p in problems:
        print(str(p), file=stream)


def _load(path: str, replicas: int | None = None) -> LoadedConfig:
    return load_config(path, replicas)


# ---------------------------------------------------------------------------------------------
# validate


def cmd_validate(args: argparse.Namespace) -> int:
    """Validate config files; every problem of every file is printed."""
    status = EXIT_OK
    for path in args.files:
        try:
            loaded = _load(path, args.replicas)
        except ConfigError as exc:
            _print_problems(exc.problems, sys.stderr)
            errors = sum(1 for p in exc.problems if p.severity is Severity.ERROR)
            print(f"{path}: invalid ({errors} error(s))", file=sys.stderr)
            status = EXIT_BAD_INPUT
            continue
        _print_problems(loaded.warnings, sys.stderr)
        n = len(loaded.config.rollouts)
        print(f"{path}: ok ({n} rollout{'s' if n != 1 else ''}, {len(loaded.warnings)} warning(s))")
    return status


# ---------------------------------------------------------------------------------------------
# plan


def _plan_json(plan: Plan) -> dict[str, Any]:
    return {
        "rollout": plan.rollout,
        "replicas": plan.limits.total,
        "maxSurge": plan.limits.surge,
        "maxUnavailable": plan.limits.unavailable,
        "feasible": plan.feasible,
        "minimumDuration": format_duration(plan.minimum_duration),
        "steps": [
            {
                "step": row.label,
                "weight": row.weight,
                "canary": row.split.canary if row.split else None,
                "stable": row.split.stable if row.split else None,
                "achievedWeight": round(row.achieved, 2) if row.achieved is not None else None,
                "withinTolerance": row.within_tolerance,
                "peakPods": row.peak_pods,
                "hold": format_duration(row.hold),
                "manualGate": row.manual_gate,
                "moves": [{"deployment": m.role.value, "replicas": m.replicas} for m in row.moves],
                "cumulative": format_duration(row.cumulative),
                "note": row.note,
            }
            for row in plan.steps
        ],
    }


def _plan_table(plan: Plan, rollout: Rollout, console: Console) -> None:
    table = Table(
        title=(
            f"rollout {plan.rollout}: {rollout.stable.deployment} -> {rollout.canary.deployment}, "
            f"N={plan.limits.total}, maxSurge={plan.limits.surge}, "
            f"maxUnavailable={plan.limits.unavailable}"
        ),
        title_justify="left",
    )
    for col, justify in (
        ("step", "left"),
        ("weight", "right"),
        ("canary", "right"),
        ("stable", "right"),
        ("achieved", "right"),
        ("peak pods", "right"),
        ("hold", "right"),
        ("min. elapsed", "right"),
        ("note", "left"),
    ):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for row in plan.steps:
        label = row.label + (" (gate)" if row.manual_gate else "")
        hold = format_duration(row.hold) + (" bake" if row.label == "flip" else "")
        table.add_row(
            label,
            f"{row.weight:g}%",
            str(row.split.canary) if row.split else "-",
            str(row.split.stable) if row.split else "-",
            f"{row.achieved:.1f}%" if row.achieved is not None else "-",
            str(row.peak_pods) if row.peak_pods is not None else "-",
            hold,
            format_duration(row.cumulative),
            row.note,
        )
    console.print(table)
    console.print(
        f"minimum time to completion: {format_duration(plan.minimum_duration)} "
        f"(holds and bake; pod start-up and analysis holds add to it)"
    )


def cmd_plan(args: argparse.Namespace) -> int:
    """Print each step's replica counts and timing."""
    try:
        loaded = _load(args.file)
    except ConfigError as exc:
        _print_problems(exc.problems, sys.stderr)
        return EXIT_BAD_INPUT
    rollouts = loaded.config.rollouts
    if args.rollout:
        try:
            rollouts = [loaded.config.rollout(args.rollout)]
        except KeyError as exc:
            raise UsageError(str(exc.args[0])) from None
    if not rollouts:
        raise UsageError(f"{args.file}: no rollouts to plan")
    plans: list[tuple[Rollout, Plan]] = []
    for rollout in rollouts:
        total = args.replicas or rollout.replicas
        if total is None:
            raise UsageError(
                f"{args.file}: rollout {rollout.name!r} sets no `replicas` (it takes stable's "
                "count when it starts): pass --replicas N to plan it"
            )
        plans.append((rollout, plan_rollout(rollout, total)))
    if args.output == "json":
        data = [_plan_json(p) for _, p in plans]
        print(json.dumps(data if len(data) > 1 or not args.rollout else data[0], indent=2))
    else:
        console = Console(width=max(Console().width, 120) if not sys.stdout.isatty() else None)
        for rollout, plan in plans:
            _plan_table(plan, rollout, console)
    return EXIT_OK if all(p.feasible for _, p in plans) else EXIT_BAD_INPUT


def cmd_run(args: argparse.Namespace) -> int:
    """Run the controller until SIGTERM/SIGINT."""
    import asyncio

    from controller.daemon import Controller, DaemonOptions
    from controller.kube import KubeError
    from controller.log import configure_logging

    try:
        loaded = _load(args.config)
    except ConfigError as exc:
        _print_problems(exc.problems, sys.stderr)
        return EXIT_BAD_INPUT
    config = loaded.config
    if args.prometheus_url:
        config = config.model_copy(
            update={"prometheus": config.prometheus.model_copy(update={"url": args.prometheus_url})}
        )
    host, _, port = args.listen.rpartition(":")
    if not port.isdigit():
        raise UsageError(f"--listen expects HOST:PORT, got {args.listen!r}")
    try:
        configure_logging(args.log_format, args.log_level)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    _print_problems(loaded.warnings, sys.stderr)
    try:
        lease_duration = parse_duration(args.lease_duration)
        renew_deadline = parse_duration(args.renew_deadline)
        retry_period = parse_duration(args.retry_period)
    except ValueError as exc:
        raise UsageError(f"leader election: {exc}") from None
    options = DaemonOptions(
        leader_elect=args.leader_elect,
        leader_namespace=args.leader_namespace,
        lease_duration=lease_duration,
        renew_deadline=renew_deadline,
        retry_period=retry_period,
        kubeconfig=args.kubeconfig,
        listen_host=host or "0.0.0.0",
        listen_port=int(port),
        namespaces=tuple(args.namespace or ()),
        config_source=args.config,
        **({"identity": args.identity} if args.identity else {}),
    )
    try:
        asyncio.run(Controller(config, options).run())
    except KubeError as exc:
        print(f"ptc run: Kubernetes API: {exc}", file=sys.stderr)
        return EXIT_RUNTIME
    except OSError as exc:
        print(f"ptc run: {exc}", file=sys.stderr)
        return EXIT_RUNTIME
    return EXIT_OK


def cmd_command(args: argparse.Namespace) -> int:
    """Send a manual command to a running controller and wait for its acknowledgement."""
    import asyncio

    from controller.commands import CommandError, RolloutNotFound, send_command
    from controller.kube import KubeError
    from controller.rollout import CommandKind

    if args.timeout <= 0:
        raise UsageError("--timeout must be positive")
    try:
        result = asyncio.run(
            send_command(
                CommandKind(args.command),
                args.rollout,
                args.namespace,
                kubeconfig=args.kubeconfig,
                timeout=args.timeout,
                by=args.by,
            )
        )
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

    from controller.kube import KubeError
    from controller.status_source import StatusError

    if args.interval <= 0:
        raise UsageError("--interval must be positive")
    try:
        return asyncio.run(_status(args))
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

    from controller.kube import Kube
    from controller.status import decisions_table, status_table
    from controller.status_source import ClusterStatus, from_controller, select

    kube: Kube | None = None
    cluster: ClusterStatus | None = None
    try:
        if not args.controller:
            kube = await Kube.connect(args.kubeconfig)
            cluster = await _cluster_status(kube, args.namespace)

        async def fetch() -> list[dict[str, Any]]:
            if cluster is not None:
                return select(cluster.documents(), args.rollout)
            return select(await from_controller(args.controller), args.rollout)

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
                for doc in docs:
                    console.print(decisions_table(doc))
            return EXIT_OK
        with Live(console=console, auto_refresh=False, transient=False) as live:
            while True:
                docs = await fetch()
                now = datetime.now(UTC)
                live.update(
                    Group(status_table(docs, now), *(decisions_table(d) for d in docs)),
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
    from controller.status_source import ClusterStatus

    cluster = ClusterStatus(kube, namespace)
    await cluster.start()
    return cluster


def _print_yaml(data: Any) -> None:
    from ruamel.yaml import YAML

    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.dump(data, sys.stdout)


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the demo: a complete rollout, then a rolled-back one, on the sandbox."""
    import asyncio

    from controller.demo import run_demo
    from controller.log import configure_logging

    if args.speed <= 0:
        raise UsageError("--speed must be positive")
    # The view shows what matters; the controller's own log only for problems.
    configure_logging("console", "error")
    color = not args.no_color and sys.stdout.isatty()
    result = asyncio.run(
        run_demo(speed=args.speed, color=color, prometheus=False if args.no_prometheus else None)
    )
    return EXIT_OK if result.ok else EXIT_RUNTIME


def cmd_report(args: argparse.Namespace) -> int:
    """Write a rollout's timeline (decisions, weight, metrics) as HTML, PNG or SVG."""
    import asyncio

    from controller.report.command import make_report
    from controller.report.errors import BadReportRequest, ReportError
    from controller.report.fetch import ReportRequest

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


def cmd_sandbox(args: argparse.Namespace) -> int:
    """Run the sandbox until interrupted."""
    import asyncio

    from controller.sandbox.serve import options_from_args, serve

    if args.rate < 0 or args.ready_delay < 0:
        raise UsageError("--rate and --ready-delay must be >= 0")
    options = options_from_args(
        workdir=args.workdir,
        port=args.port,
        control_port=args.control_port,
        rate=args.rate,
        prometheus=args.prometheus,
        ready_delay=args.ready_delay,
    )
    try:
        asyncio.run(serve(options, args.scenario))
    except OSError as exc:
        print(f"ptc sandbox: {exc}", file=sys.stderr)
        return EXIT_RUNTIME
    return EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    """Print the config JSON schema (or the Markdown reference generated from it)."""
    if args.markdown:
        from controller.config.reference import markdown_reference

        sys.stdout.write(markdown_reference())
    else:
        sys.stdout.write(schema_json())
    return EXIT_OK


# ---------------------------------------------------------------------------------------------


COMMAND_HELP = {
    "promote": "skip the current hold, gate or bake and go on",
    "abort": "roll back now",
    "pause": "stop progressing (analysis still rolls back on a breach)",
    "resume": "go on after a pause",
    "retry": "start again after a rollback (cooldown and maxAttempts apply)",
}


def _command_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("rollout", metavar="ROLLOUT", help="the rollout's name in the config")
    p.add_argument("--namespace", "-n", default="default", help="its namespace (default)")
    p.add_argument("--kubeconfig", metavar="FILE", help="kubeconfig (default: in-cluster)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the ack (30)")
    p.add_argument("--by", help="who gives the command (default: user@host)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    parser = argparse.ArgumentParser(
        prog="ptc",
        description=(
            "ptc - progressive traffic controller for Kubernetes. Shifts a Service from a stable "
            "Deployment to a canary in stages by replica ratio, judges each stage on Prometheus "
            "metrics, flips the selector, and rolls back by itself on an SLO breach."
        ),
        epilog="Exit codes: 0 ok, 1 runtime failure, 2 invalid input.",
    )
    parser.add_argument("--version", action="version", version=f"ptc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser(
        "validate",
        help="check config files and report every problem",
        description=(
            "Validate config files. Every problem is reported at once as FILE:LINE: rollout "
            "'NAME': field.path: what is wrong. Warnings (e.g. a weight the replica count can "
            "only approximate) do not fail validation."
        ),
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="config file(s) (YAML)")
    p.add_argument(
        "--replicas",
        type=int,
        metavar="N",
        help="also check the plans of rollouts that set no `replicas`, for N replicas",
    )
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser(
        "plan",
        help="show each step's replica counts, achieved weight and timing",
        description=(
            "Print, per step: the weight asked, canary/stable replicas, the weight achieved, the "
            "peak pod count while shifting, the hold, and the minimum time elapsed. The last row "
            "is the flip. Exit 2 if a step is infeasible."
        ),
    )
    p.add_argument("file", metavar="FILE", help="config file (YAML)")
    p.add_argument("--rollout", metavar="NAME", help="only this rollout (default: all)")
    p.add_argument(
        "--replicas",
        type=int,
        metavar="N",
        help="plan for N replicas (default: the rollout's `replicas`)",
    )
    p.add_argument("--output", "-o", choices=("table", "json"), default="table")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser(
        "run",
        help="run the controller (the daemon) until SIGTERM",
        description=(
            "Run the controller: watch each rollout's Deployments, Pods, Service and "
            "EndpointSlices, shift traffic step by step, judge each step on Prometheus, flip, "
            "bake, keep stable for the retention window, and roll back on a breach. Serves "
            "/healthz, /readyz, /metrics and /api/v1/rollouts. SIGTERM finishes the write in "
            "flight and exits 0."
        ),
    )
    p.add_argument("--config", required=True, metavar="FILE", help="config file (YAML)")
    p.add_argument("--kubeconfig", metavar="FILE", help="kubeconfig (default: in-cluster)")
    p.add_argument(
        "--namespace",
        action="append",
        metavar="NS",
        help="only manage rollouts in NS (repeatable; default: all in the config)",
    )
    p.add_argument(
        "--listen",
        default="0.0.0.0:8080",
        metavar="HOST:PORT",
        help="HTTP server address (default 0.0.0.0:8080)",
    )
    p.add_argument("--prometheus-url", metavar="URL", help="override prometheus.url")
    p.add_argument("--identity", help="this instance's name in state and Events (host name)")
    p.add_argument(
        "--leader-elect",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="elect one active controller through a Lease (default on; run two replicas)",
    )
    p.add_argument(
        "--leader-namespace",
        metavar="NS",
        help="the Lease's namespace (default: $POD_NAMESPACE, else the first rollout's)",
    )
    p.add_argument(
        "--lease-duration",
        default="15s",
        metavar="DURATION",
        help="how long a standby waits on a silent leader (15s, whole seconds)",
    )
    p.add_argument(
        "--renew-deadline",
        default="10s",
        metavar="DURATION",
        help="a leader that cannot renew for this long stops writing (10s)",
    )
    p.add_argument(
        "--retry-period",
        default="2s",
        metavar="DURATION",
        help="how often the Lease is renewed or tried (2s)",
    )
    p.add_argument(
        "--log-format",
        choices=("auto", "json", "console"),
        default="auto",
        help="json when stderr is not a terminal (auto)",
    )
    p.add_argument("--log-level", default="info", help="debug, info, warning or error")
    p.set_defaults(func=cmd_run)

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
        "demo",
        help="watch ptc roll zai-proxy forward, then roll a bad version back (sandbox)",
        description=(
            "Start the sandbox with the seed's zai-proxy world and traffic, start the controller "
            "in-process, and play two rollouts: v1 -> v2 completes (steps, a capacity hold while "
            "v2 warms up, flip, bake, v1 scaled to 0 and kept), then v2 -> v3 starts answering "
            "502s and is rolled back. Uses a real Prometheus if `prometheus` is installed, "
            "else the direct provider (ptc scrapes the pods). About two minutes at --speed 1."
        ),
    )
    p.add_argument("--speed", type=float, default=1.0, help="time compression (2 = twice as fast)")
    p.add_argument("--scenario", choices=("zai-proxy",), default="zai-proxy", help="the world")
    p.add_argument("--no-color", action="store_true", help="no colours")
    p.add_argument(
        "--no-prometheus",
        action="store_true",
        help="use the direct provider even if Prometheus is installed",
    )
    p.set_defaults(func=cmd_demo)

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

    p = sub.add_parser(
        "sandbox",
        help="run an in-process Kubernetes API + simulated zai-proxy pods + traffic",
        description=(
            "Run the sandbox until interrupted: a Kubernetes API subset on 127.0.0.1 (reachable "
            "with the kubeconfig it prints), a workload simulator, simulated zai-proxy pods, a "
            "traffic generator routing through the Service, a real Prometheus scraping the pods "
            "when the `prometheus` binary is installed, and an HTTP control endpoint "
            "(GET /status, POST /faults, POST /traffic)."
        ),
    )
    p.add_argument("--scenario", choices=("zai-proxy",), help="set up a world (default: empty)")
    p.add_argument("--port", type=int, default=0, help="API server port (default: a free one)")
    p.add_argument("--control-port", type=int, default=0, help="control port (default: free)")
    p.add_argument("--workdir", metavar="DIR", help="where the kubeconfig and data go (temp)")
    p.add_argument("--rate", type=float, default=20.0, help="requests/s of traffic (20)")
    p.add_argument(
        "--ready-delay", type=float, default=1.0, help="seconds until a new pod is Ready (1)"
    )
    p.add_argument(
        "--prometheus",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="start a real Prometheus (default: if installed)",
    )
    p.set_defaults(func=cmd_sandbox)

    p = sub.add_parser(
        "schema",
        help="print the config file's JSON schema",
        description=(
            "Print the JSON schema of a config file (as committed in config/schema.json), for "
            "editors and CI: ptc schema > config/schema.json"
        ),
    )
    p.add_argument(
        "--markdown", action="store_true", help="the config reference as Markdown instead"
    )
    p.set_defaults(func=cmd_schema)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `ptc` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from controller.log import configure_logging

    # Quiet by default: only `ptc run` (and the demo) log at info.
    configure_logging("auto", "warning")
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_BAD_INPUT
    if getattr(args, "replicas", None) is not None and args.replicas < 1:
        print("ptc: --replicas must be at least 1", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        return int(args.func(args))
    except UsageError as exc:
        print(f"ptc: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
