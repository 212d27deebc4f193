"""The `ptc` command line.

Exit codes: 0 ok, 2 bad input (config, arguments), 1 runtime failure, 130 interrupted, 141 the
reader of the output went away (``ptc plan -o json | head -1``). No traceback reaches a user:
anything unforeseen is one line on stderr naming the file the traceback was written to. Each
module registers its own subcommands.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence

from controller import __version__
from controller.ops.cli import backtest_cmd, config_cmds, ops_cmds, run_cmds
from controller.ops.cli.common import EXIT_BAD_INPUT, EXIT_RUNTIME, UsageError


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
    for module in (config_cmds, run_cmds, ops_cmds, backtest_cmd):
        module.register(sub)
    return parser


EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, as a shell reports a reader that went away


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `ptc` console script."""
    command = "ptc"
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        command = f"ptc {args.command}" if getattr(args, "command", None) else "ptc"
        code = _run(parser, args)
        sys.stdout.flush()  # a reader that went away shows here, not at interpreter exit
        return code
    except BrokenPipeError:
        _drop_stdout()
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the last resort: one line and where the details are
        print(f"{command}: internal error: {_one_line(exc)} ({_crash_log(exc)})", file=sys.stderr)
        return EXIT_RUNTIME


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from controller.shell.log import configure_logging

    # Quiet by default: only `ptc run` (and the demo) log at info.
    configure_logging("auto", "warning")
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_BAD_INPUT
    replicas = getattr(args, "replicas", None)
    if replicas is not None:
        from controller.core.config.checks import MAX_REPLICAS

        if not 1 <= replicas <= MAX_REPLICAS:
            print(f"ptc: --replicas must be between 1 and {MAX_REPLICAS}", file=sys.stderr)
            return EXIT_BAD_INPUT
    try:
        return int(args.func(args))
    except UsageError as exc:
        print(f"ptc: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


def _drop_stdout() -> None:
    """Point stdout at /dev/null: the interpreter's last flush must not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    text = text if len(text) <= 200 else text[:197] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _crash_log(exc: BaseException) -> str:
    """Write the traceback to a file; say where (or that it could not be written)."""
    name = f"ptc-crash-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    path = os.path.join(tempfile.gettempdir(), name)
    try:
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(f"ptc {__version__}: {' '.join(sys.argv)}\n")
            handle.write("".join(traceback.format_exception(exc)))
    except OSError as err:
        return f"the traceback could not be written to {path}: {err.strerror}"
    return f"traceback in {path}; please report it"
