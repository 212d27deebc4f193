"""Semantic checks that a well-typed config can still fail: order, sanity, feasibility."""

from __future__ import annotations

import difflib
from collections.abc import Sequence, Set

from pydantic.alias_generators import to_camel

# Module imports, not names: templates and plan import controller.core.config.model, so when either
# is imported first this module runs while that one is half-initialised.
from controller.core import plan as planner
from controller.core.analysis import templates
from controller.core.config.alertchecks import check_alerts
from controller.core.config.checks_types import Finding, Loc, Severity
from controller.core.config.model import Analysis, Config, Metric, Preflight, Rollout, Source
from controller.core.config.querychecks import check_queries

__all__ = ["Finding", "Loc", "Severity", "check_config", "check_rollouts"]

MAX_REPLICAS = 10_000  # the planner walks every pod move: bounded work, also at run time
PLAN_BUDGET = 100_000  # pod moves planned per file (about a second), then plans are skipped


def check_config(config: Config, replicas: int | None = None) -> list[Finding]:
    """Every semantic problem in the config, errors and warnings.

    `replicas` plans the rollouts that set no `replicas` of their own for that N too.
    """
    return check_rollouts(list(enumerate(config.rollouts)), replicas)


def check_rollouts(
    indexed: Sequence[tuple[int, Rollout]],
    replicas: int | None = None,
    skip_plan: Set[int] = frozenset(),
) -> list[Finding]:
    """Semantic problems of the rollouts that passed type validation, by their file index.

    The rollouts at `skip_plan` are not planned (repaired ones: placeholders plan nothing).
    """
    findings: list[Finding] = []
    budget = PLAN_BUDGET
    unplanned = 0
    seen_names: dict[str, int] = {}
    seen_services: dict[tuple[str, str], str] = {}
    for i, rollout in indexed:
        base: Loc = ("rollouts", i)
        if rollout.name in seen_names:
            findings.append(
                Finding(
                    (*base, "name"),
                    f"duplicate rollout name {rollout.name!r} "
                    f"(also rollouts[{seen_names[rollout.name]}])",
                )
            )
        seen_names.setdefault(rollout.name, i)
        key = (rollout.namespace, rollout.service)
        if key in seen_services:
            findings.append(
                Finding(
                    (*base, "service"),
                    f"Service {rollout.namespace}/{rollout.service} is already managed by "
                    f"rollout {seen_services[key]!r}; one rollout per Service",
                )
            )
        seen_services.setdefault(key, rollout.name)
        cost = _plan_cost(rollout, replicas)
        plan = i not in skip_plan and cost <= budget
        budget -= cost if plan else 0
        unplanned += 1 if i not in skip_plan and not plan else 0
        findings.extend(
            Finding((*base, *f.loc), f.message, f.severity)
            for f in check_rollout(rollout, replicas, plan)
        )
    if unplanned:
        findings.append(
            Finding(
                ("rollouts",),
                f"the plans of {unplanned} rollout(s) were not checked: too many pod moves to "
                "plan in one file; check them with `ptc plan --rollout NAME`",
                Severity.WARNING,
            )
        )
    return findings


def _plan_cost(rollout: Rollout, replicas: int | None) -> int:
    """About how many pod moves planning the rollout walks through."""
    total = rollout.replicas or replicas or 0
    if total > MAX_REPLICAS:
        return 0  # refused, not planned
    surge = max(1, planner.resolve_surge(rollout.max_surge, total))
    return (total // surge + 1) * (len(rollout.steps) + 1)


def check_rollout(
    rollout: Rollout, replicas: int | None = None, plan: bool = True
) -> list[Finding]:
    """Semantic problems of one rollout, located relative to it.

    The plan is checked for the rollout's `replicas`, else for `replicas` if given.
    """
    out: list[Finding] = []
    if rollout.stable.deployment == rollout.canary.deployment:
        out.append(
            Finding(
                ("canary", "deployment"),
                f"canary and stable are the same Deployment {rollout.canary.deployment!r}",
            )
        )
    if rollout.stable.version is not None and rollout.stable.version == rollout.canary.version:
        out.append(
            Finding(
                ("canary", "version"),
                f"canary version {rollout.canary.version!r} equals stable's; the flip would "
                "pin the Service to both",
            )
        )
    if rollout.shared_selector is not None:
        if not rollout.shared_selector:
            out.append(Finding(("sharedSelector",), "must not be empty: it would match every pod"))
        if rollout.version_label in rollout.shared_selector:
            out.append(
                Finding(
                    ("sharedSelector", rollout.version_label),
                    f"the shared selector must not contain the version label "
                    f"{rollout.version_label!r}: it must match both versions",
                )
            )
    if rollout.rollback.canary_replicas > 0 and rollout.stable.version is None:
        out.append(
            Finding(
                ("rollback", "canaryReplicas"),
                "keeping canary pods after a rollback needs `stable.version`: without it the "
                "selector cannot exclude them and they keep receiving traffic",
            )
        )
    if rollout.max_surge in (0, "0%") and rollout.max_unavailable in (0, "0%"):
        out.append(
            Finding(
                ("maxSurge",),
                "maxSurge and maxUnavailable cannot both be 0: no pod could ever move",
            )
        )
    previous = 0.0
    for j, step in enumerate(rollout.steps):
        if not 0 < step.weight <= 100:
            out.append(
                Finding(
                    ("steps", j, "weight"), f"expected a weight in (0, 100], got {step.weight:g}"
                )
            )
        elif step.weight <= previous:
            out.append(
                Finding(
                    ("steps", j, "weight"),
                    f"weights must increase strictly: {step.weight:g} follows {previous:g}",
                )
            )
        previous = max(previous, step.weight)
        if step.weight == 100 and j < len(rollout.steps) - 1:
            out.append(Finding(("steps", j, "weight"), "only the last step may have weight 100"))
        if step.analysis is not None:
            # Judge the merged analysis, but report only what the step changes: the rest is the
            # rollout's own analysis, judged (and reported) once below.
            changed = {to_camel(k) for k, v in step.analysis if v is not None}
            if "interval" in changed:
                changed.add("maxHold")  # maxHold is judged against the interval
            out.extend(
                Finding(("steps", j, "analysis", *f.loc), f.message, f.severity)
                for f in check_analysis(rollout.step_analysis(j))
                if f.loc[0] in changed
            )
    if rollout.steps and rollout.steps[-1].weight == 100:
        out.append(
            Finding(
                ("steps", len(rollout.steps) - 1, "weight"),
                "a 100% step scales stable to 0 before the flip: nothing stays warm for an "
                "instant rollback",
                Severity.WARNING,
            )
        )
    out.extend(
        Finding(("analysis", *f.loc), f.message, f.severity)
        for f in check_analysis(rollout.analysis)
    )
    out.extend(
        Finding(("preflight", *f.loc), f.message, f.severity)
        for f in check_preflight(rollout.preflight)
    )
    out.extend(check_queries(rollout))
    out.extend(check_alerts(rollout))
    total = rollout.replicas or replicas
    if total is not None and total > MAX_REPLICAS:
        out.append(
            Finding(
                ("replicas",),
                f"{total} replicas: ptc plans rollouts of at most {MAX_REPLICAS} replicas",
            )
        )
    elif plan and total is not None and not any(f.severity is Severity.ERROR for f in out):
        out.extend(check_plan(rollout, total))
    return out


def check_preflight(preflight: Preflight) -> list[Finding]:
    """A family cannot be both required at start and lazy; the old key gets a pointer."""
    out: list[Finding] = []
    lazy = set(preflight.metrics.lazy)
    for key, names in (
        (("metrics", "atStart"), preflight.metrics.at_start),
        (("expectMetrics",), preflight.expect_metrics),
    ):
        for j, name in enumerate(names):
            if name in lazy:
                out.append(
                    Finding(
                        (*key, j),
                        f"{name!r} is also in metrics.lazy: a family is either there from "
                        "process start or created lazily, not both",
                    )
                )
    if preflight.expect_metrics:
        out.append(
            Finding(
                ("expectMetrics",),
                "expectMetrics is the old name of metrics.atStart: every family listed must "
                "exist before the pod's first request. A family the service creates with its "
                "first request (zai-proxy: zai_proxy_requests_total, "
                "zai_proxy_request_duration_seconds) belongs in metrics.lazy, or a canary "
                "that has served nothing yet fails its preflight",
                Severity.WARNING,
            )
        )
    return out


def check_plan(rollout: Rollout, total: int) -> list[Finding]:
    """Warnings for weights the replica count can only approximate; errors for dead ends."""
    out: list[Finding] = []
    plan = planner.plan_rollout(rollout, total)
    for row in plan.steps:
        if not row.note:
            continue
        loc: Loc = ("steps", row.index, "weight") if row.label != "flip" else ("flip",)
        if "shifting: surge needs" in row.note:
            loc = ("maxSurge",)
        severity = Severity.ERROR if row.note.startswith("infeasible") else Severity.WARNING
        out.append(Finding(loc, f"with {total} replica(s): {row.note}", severity))
    return out


def _source_problems(source: Source, loc: Loc, provider: str) -> list[Finding]:
    out: list[Finding] = []
    kinds = [
        k
        for k in ("query", "counterRatio", "gauge", "histogramQuantile", "rate")
        if getattr(source, _snake(k)) is not None
    ]
    if len(kinds) != 1:
        got = ", ".join(kinds) if kinds else "none"
        out.append(
            Finding(
                loc,
                "expected exactly one of query, counterRatio, gauge, histogramQuantile, rate; "
                f"got {got}",
            )
        )
    if source.query is not None:
        for name in templates.unknown_variables(source.query):
            out.append(Finding((*loc, "query"), _unknown_var(name)))
        if provider == "direct":
            out.append(
                Finding(
                    (*loc, "query"),
                    "the direct provider evaluates structured metrics only; use counterRatio, "
                    "gauge, histogramQuantile or rate",
                )
            )
    return out


def _snake(camel: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in camel)


def _unknown_var(name: str) -> str:
    close = difflib.get_close_matches(name, sorted(templates.KNOWN_VARIABLES), n=1)
    if close:
        return f"unknown template variable {{{{ {name} }}}}; did you mean {{{{ {close[0]} }}}}?"
    known = ", ".join(sorted(templates.KNOWN_VARIABLES))
    return f"unknown template variable {{{{ {name} }}}}; known variables: {known}"


def _metric_problems(metric: Metric, loc: Loc, provider: str) -> list[Finding]:
    out = _source_problems(metric, loc, provider)
    if metric.sample_query is not None:
        out.extend(
            Finding((*loc, "sampleQuery"), _unknown_var(n))
            for n in templates.unknown_variables(metric.sample_query)
        )
    if metric.max is None and metric.min is None and metric.compare is None:
        out.append(Finding(loc, "a metric needs a threshold: max, min or compare"))
    if metric.max is not None and metric.min is not None and metric.min >= metric.max:
        out.append(Finding((*loc, "min"), f"min {metric.min:g} must be below max {metric.max:g}"))
    if metric.counter_ratio is not None and not metric.counter_ratio.per_event:
        for bound in ("max", "min"):
            value = getattr(metric, bound)
            if value is not None and value > 1:
                out.append(
                    Finding(
                        (*loc, bound),
                        f"a counterRatio is a fraction in [0, 1]; {bound} {value:g} can never "
                        f"{'be exceeded' if bound == 'max' else 'be met'} "
                        f"(did you mean {value / 100:g}?)",
                    )
                )
    for bound in ("max", "min"):
        value = getattr(metric, bound)
        if value is not None and value < 0 and metric.gauge is None and metric.query is None:
            out.append(
                Finding((*loc, bound), f"{bound} {value:g} is negative; rates and ratios are not")
            )
    return out


def check_analysis(analysis: Analysis) -> list[Finding]:
    """Problems in one analysis block (locations relative to it)."""
    out: list[Finding] = []
    provider = analysis.provider
    names: set[str] = set()
    for k, metric in enumerate(analysis.metrics):
        loc: Loc = ("metrics", k)
        if metric.name in names:
            out.append(Finding((*loc, "name"), f"duplicate metric name {metric.name!r}"))
        names.add(metric.name)
        out.extend(_metric_problems(metric, loc, provider))
    for side in ("canary", "stable", "service"):
        template = str(getattr(analysis.selectors, side))
        out.extend(
            Finding(("selectors", side), _unknown_var(n))
            for n in templates.unknown_variables(template)
        )
    if analysis.capacity_gate is not None:
        gate = analysis.capacity_gate
        out.extend(_source_problems(gate.capacity, ("capacityGate", "capacity"), provider))
        out.extend(_source_problems(gate.demand, ("capacityGate", "demand"), provider))
        if gate.headroom < 1:
            out.append(
                Finding(
                    ("capacityGate", "headroom"),
                    f"headroom {gate.headroom:g} < 1 lets canary take more than it can absorb",
                    Severity.WARNING,
                )
            )
    if analysis.interval.total_seconds() <= 0:
        out.append(Finding(("interval",), "interval must be longer than 0s"))
    if analysis.window.total_seconds() <= 0:
        out.append(Finding(("window",), "window must be longer than 0s"))
    if analysis.max_hold < analysis.interval:
        out.append(
            Finding(
                ("maxHold",),
                "maxHold is shorter than one analysis interval: a step could never be judged",
            )
        )
    return out
