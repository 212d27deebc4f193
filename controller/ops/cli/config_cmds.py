"""`ptc validate`, `ptc plan`, `ptc schema`: the config, checked and explained."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from controller.core.config import ConfigError, Rollout, Shifting
from controller.core.config.checks import Severity
from controller.core.config.schema import schema_json
from controller.core.durations import format_duration
from controller.core.plan import Plan, plan_rollout
from controller.ops.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_OK,
    UsageError,
    _load,
    _print_problems,
)


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


def _plan_json(plan: Plan) -> dict[str, Any]:
    return {
        "rollout": plan.rollout,
        "replicas": plan.limits.total,
        "maxSurge": plan.limits.surge,
        "maxUnavailable": plan.limits.unavailable,
        "shifting": plan.shifting.value,
        "servingPodsTerminated": plan.serving_terminated,
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
                "servingPodsTerminated": row.serving_terminated,
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
            f"maxUnavailable={plan.limits.unavailable}, shifting={plan.shifting.value}"
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
        ("serving pods stopped", "right"),
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
            str(row.serving_terminated),
            hold,
            format_duration(row.cumulative),
            row.note,
        )
    console.print(table)
    console.print(
        f"minimum time to completion: {format_duration(plan.minimum_duration)} "
        f"(holds and bake; pod start-up and analysis holds add to it)"
    )
    if plan.serving_terminated:
        console.print(
            f"{plan.serving_terminated} pod(s) are terminated while the Service routes to them: "
            "give the pods a preStop delay, or use shifting: surge (no serving pod is "
            "terminated, more pods at once)"
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
        if args.shifting:
            rollout = rollout.model_copy(update={"shifting": Shifting(args.shifting)})
        plans.append((rollout, plan_rollout(rollout, total)))
    if args.output == "json":
        data = [_plan_json(p) for _, p in plans]
        print(json.dumps(data if len(data) > 1 or not args.rollout else data[0], indent=2))
    else:
        console = Console(width=max(Console().width, 120) if not sys.stdout.isatty() else None)
        for rollout, plan in plans:
            _plan_table(plan, rollout, console)
    return EXIT_OK if all(p.feasible for _, p in plans) else EXIT_BAD_INPUT


def cmd_schema(args: argparse.Namespace) -> int:
    """Print the config JSON schema (or the Markdown reference generated from it)."""
    if args.markdown:
        from controller.core.config.reference import markdown_reference

        sys.stdout.write(markdown_reference())
    else:
        sys.stdout.write(schema_json())
    return EXIT_OK


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this module's subcommands."""
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
            "peak pod count while shifting, how many pods are terminated while the Service still "
            "routes to them, the hold, and the minimum time elapsed. The last row is the flip. "
            "--shifting shows what the other mode would do. Exit 2 if a step is infeasible."
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
    p.add_argument(
        "--shifting",
        choices=[m.value for m in Shifting],
        help="plan in this shifting mode instead of the rollout's (standard: stable scaled down "
        "at each step; surge: stable kept at N until the flip)",
    )
    p.add_argument("--output", "-o", choices=("table", "json"), default="table")
    p.set_defaults(func=cmd_plan)

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
