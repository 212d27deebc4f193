"""The `ptc` command line.

Exit codes: 0 ok, 2 bad input (config, arguments), 1 runtime failure. User errors never
surface as tracebacks. Each module registers its own subcommands.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from controller import __version__
from controller.cli import config_cmds, ops_cmds, run_cmds
from controller.cli.common import EXIT_BAD_INPUT, UsageError


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
    # In the order people reach for them: the config, running, operating.
    for module in (config_cmds, run_cmds, ops_cmds):
        module.register(sub)
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
