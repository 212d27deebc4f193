"""`ptc run`, `ptc demo`, `ptc sandbox`: the controller and the sandbox world."""

from __future__ import annotations

import argparse
import os
import sys

from controller.core.config import ConfigError
from controller.core.durations import parse_duration
from controller.core.sharding import MAX_SHARDS, MEMBER_KEY
from controller.ops.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_OK,
    EXIT_RUNTIME,
    UsageError,
    _load,
    _print_problems,
    require_extra,
)


def cmd_run(args: argparse.Namespace) -> int:
    """Run the controller until SIGTERM/SIGINT."""
    import asyncio

    from controller.shell.daemon import Controller
    from controller.shell.kube import KubeError
    from controller.shell.log import configure_logging
    from controller.shell.options import DaemonOptions
    from controller.shell.shards import lease_timings

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
        lease_duration, renew_deadline, retry_period = lease_timings(
            args.shards,
            *(
                None if flag is None else parse_duration(flag)
                for flag in (args.lease_duration, args.renew_deadline, args.retry_period)
            ),
        )
    except ValueError as exc:
        raise UsageError(f"leader election: {exc}") from None
    if not 0 <= args.shards <= MAX_SHARDS:
        raise UsageError(f"--shards must be between 0 (off) and {MAX_SHARDS}, got {args.shards}")
    if args.shards and not args.leader_elect:
        raise UsageError("--shards needs leader election (each shard has its own Lease)")
    if args.alerts_token_file and not os.path.isfile(args.alerts_token_file):
        raise UsageError(f"--alerts-token-file: no such file {args.alerts_token_file!r}")
    options = DaemonOptions(
        alerts_token_file=args.alerts_token_file or None,
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
        shards=args.shards,
        **({"identity": args.identity} if args.identity else {}),
    )
    if options.shards and not MEMBER_KEY.match(options.identity):
        raise UsageError(
            f"--shards: identity {options.identity!r} must consist of letters, digits, '-', "
            "'_' or '.' (it names this replica in the members ConfigMap); set --identity"
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


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the demo: a complete rollout, then a rolled-back one, on the sandbox."""
    import asyncio

    require_extra("controller.sandbox", "sandbox", "ptc demo")
    from controller.ops.demo import run_demo
    from controller.shell.log import configure_logging

    if args.speed <= 0:
        raise UsageError("--speed must be positive")
    # The view shows what matters; the controller's own log only for problems.
    configure_logging("console", "error")
    color = not args.no_color and sys.stdout.isatty()
    result = asyncio.run(
        run_demo(
            speed=args.speed,
            color=color,
            prometheus=False if args.no_prometheus else None,
            echo_order=args.echo_order,
        )
    )
    return EXIT_OK if result.ok else EXIT_RUNTIME


def cmd_sandbox(args: argparse.Namespace) -> int:
    """Run the sandbox until interrupted."""
    import asyncio

    require_extra("controller.sandbox", "sandbox", "ptc sandbox")
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
        echo_order=args.echo_order,
    )
    try:
        asyncio.run(serve(options, args.scenario))
    except OSError as exc:
        print(f"ptc sandbox: {exc}", file=sys.stderr)
        return EXIT_RUNTIME
    return EXIT_OK


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this module's subcommands."""
    p = sub.add_parser(
        "run",
        help="run the controller (the daemon) until SIGTERM",
        description=(
            "Run the controller: watch each rollout's Deployments, Pods, Service and "
            "EndpointSlices, shift traffic step by step, judge each step on Prometheus, flip, "
            "bake, keep stable for the retention window, and roll back on a breach. Serves "
            "/healthz, /readyz, /metrics, /api/v1/rollouts and (with --alerts-token-file) the "
            "Alertmanager receiver /api/v1/alerts. SIGTERM finishes the write in "
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
        metavar="DURATION",
        help="how long a standby waits on a silent leader (15s; 30s with --shards over 1 "
        "unless a timing is set; whole seconds)",
    )
    p.add_argument(
        "--renew-deadline",
        metavar="DURATION",
        help="a leader that cannot renew for this long stops writing (10s; 20s with --shards "
        "over 1 unless a timing is set)",
    )
    p.add_argument(
        "--retry-period",
        metavar="DURATION",
        help="how often the Lease is renewed or tried (2s)",
    )
    p.add_argument(
        "--shards",
        type=int,
        default=0,
        metavar="S",
        help="split the rollouts into S shards, one Lease each, so replicas share the work "
        "(README 'Sharding'; 0: one Lease for all, the default)",
    )
    p.add_argument(
        "--log-format",
        choices=("auto", "json", "console"),
        default="auto",
        help="json when stderr is not a terminal (auto)",
    )
    p.add_argument("--log-level", default="info", help="debug, info, warning or error")
    p.add_argument(
        "--alerts-token-file",
        default=os.environ.get("PTC_ALERTS_TOKEN_FILE", ""),
        metavar="FILE",
        help="serve the Alertmanager webhook POST /api/v1/alerts, authenticated by the bearer "
        "token in FILE, re-read on every request (default: $PTC_ALERTS_TOKEN_FILE; unset: off)",
    )
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "demo",
        help="watch ptc roll zai-proxy forward, then roll a bad version back (sandbox)",
        description=(
            "Start the sandbox with the seed's zai-proxy world and traffic, start the controller "
            "in-process, and play two rollouts: v1 -> v2 completes (steps, a capacity hold while "
            "v2 warms up, flip, bake, v1 scaled to 0 and kept), then v2 -> v3 starts answering "
            "502s and is rolled back. Uses a real Prometheus if `prometheus` is installed, "
            "else the direct provider (ptc scrapes the pods). About a minute at --speed 1."
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
    _echo_order_argument(p)
    p.set_defaults(func=cmd_demo)

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
    p.add_argument(
        "--scenario",
        choices=("zai-proxy", "zai-proxy-quiet-canary"),
        help="set up a world (default: empty); quiet-canary: v2 at 1 Ready pod, no traffic yet",
    )
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
    _echo_order_argument(p)
    p.set_defaults(func=cmd_sandbox)


def _echo_order_argument(p: argparse.ArgumentParser) -> None:
    modes: tuple[str, ...] = ("random",)
    try:
        from controller.sandbox.echo import MODES

        modes = MODES
    except ImportError:  # an installation without the sandbox: `ptc demo` says what to install
        pass

    p.add_argument(
        "--echo-order",
        choices=modes,
        default="random",
        help="when a write's watch event reaches watchers: before, with or after the write's "
        "response, or random per write as on a real API server (default)",
    )
