"""Every query a rollout will send, compiled from its templates and parsed offline.

Queries are rendered for a stand-in rollout (fixed names), since syntax does not depend on the
names (they are validated Kubernetes names, escaped where they enter a regex); so a metric the
rollouts inherit from ``defaults:`` is parsed once, not once per rollout.
"""

from __future__ import annotations

from collections.abc import Mapping

from controller.core.analysis import templates
from controller.core.config.checks_types import Finding, Loc
from controller.core.config.model import (
    Analysis,
    AnalysisOverride,
    CanaryRef,
    CounterRatio,
    DeploymentRef,
    Metric,
    Rollout,
    Side,
    Source,
)
from controller.core.config.promql import promql_error, regex_error

_STRUCTURED = {
    "counter_ratio": "counterRatio",
    "gauge": "gauge",
    "histogram_quantile": "histogramQuantile",
    "rate": "rate",
}


_CACHE_SIZE = 1024
_cache: dict[tuple[str, str | None], list[Finding]] = {}


def check_queries(rollout: Rollout) -> list[Finding]:
    """Syntax problems of the rollout's queries, selectors and matcher regexes."""
    stand_in: Rollout | None = None
    out: list[Finding] = []
    blocks: list[tuple[Loc, Analysis, AnalysisOverride | None]] = [
        (("analysis",), rollout.analysis, None)
    ]
    blocks.extend(
        (("steps", j, "analysis"), rollout.step_analysis(j), step.analysis)
        for j, step in enumerate(rollout.steps)
        if step.analysis is not None
    )
    for base, analysis, override in blocks:
        # Rollouts that inherit one analysis from `defaults:` are judged once.
        key = (
            analysis.model_dump_json(),
            override.model_dump_json(exclude_none=True) if override is not None else None,
        )
        found = _cache.get(key)
        if found is None:
            if stand_in is None:
                stand_in = rollout.model_copy(
                    update={
                        "name": "r",
                        "namespace": "default",
                        "service": "svc",
                        "stable": DeploymentRef(deployment="stable", version="v1"),
                        "canary": CanaryRef(deployment="canary", version="v2"),
                        "analysis": rollout.analysis,
                    }
                )
            found = _analysis(stand_in, analysis, override)
            if len(_cache) >= _CACHE_SIZE:
                _cache.clear()
            _cache[key] = found
        out.extend(Finding((*base, *f.loc), f.message, f.severity) for f in found)
    return out


def _analysis(
    rollout: Rollout, analysis: Analysis, override: AnalysisOverride | None
) -> list[Finding]:
    """Problems of one analysis block, located relative to it."""
    base: Loc = ()
    out: list[Finding] = []
    context = templates.QueryContext(rollout, analysis.window)
    selectors_ok = True
    if override is None:
        for side in Side:
            template = analysis.selectors.for_side(side)
            if templates.unknown_variables(template):
                selectors_ok = False  # reported as an unknown variable
                continue
            rendered = templates.render(template, context.variables(side) | {"selector": ""})
            error = promql_error(f"up{{{rendered}}}")
            if error is not None:
                selectors_ok = False
                out.append(
                    Finding(
                        (*base, "selectors", side.value),
                        f"not valid PromQL label matchers: {error}, in {_short(rendered)}",
                    )
                )
    else:
        selectors_ok = not any(
            templates.unknown_variables(analysis.selectors.for_side(side)) for side in Side
        )
    if override is None or override.metrics is not None:
        for k, metric in enumerate(analysis.metrics):
            out.extend(_source(context, metric, (*base, "metrics", k), selectors_ok))
    gate = analysis.capacity_gate
    if gate is not None and (override is None or override.capacity_gate is not None):
        for part, source in (("capacity", gate.capacity), ("demand", gate.demand)):
            out.extend(_source(context, source, (*base, "capacityGate", part), selectors_ok))
    return out


def _source(
    context: templates.QueryContext, source: Source, loc: Loc, selectors_ok: bool
) -> list[Finding]:
    out: list[Finding] = []
    kinds = [k for k in (*_STRUCTURED, "query") if getattr(source, k) is not None]
    if len(kinds) != 1:
        return out  # reported by the source checks
    kind = kinds[0]
    sample = source.sample_query if isinstance(source, Metric) else None
    if kind == "query":
        query = source.query or ""
        if templates.unknown_variables(query) or not selectors_ok:
            return out
        compiled = context.compile(source, Side.CANARY, None)
        error = promql_error(compiled.value)
        if error is not None:
            out.append(Finding((*loc, "query"), f"not valid PromQL: {error}"))
    else:
        field = _STRUCTURED[kind]
        spec = getattr(source, kind)
        regex_ok = True
        for name, matchers in _matcher_sets(spec):
            for label, value in matchers.items():
                if value.startswith(("=~", "!~")):
                    error = regex_error(value[2:])
                    if error is not None:
                        regex_ok = False
                        out.append(
                            Finding(
                                (*loc, field, name, label),
                                f"not an RE2 regex (as Prometheus matches): {error}; got "
                                f"{_short(value)}",
                            )
                        )
        if isinstance(spec, CounterRatio):
            out.extend(_ratio(spec, (*loc, field)))
        if regex_ok and selectors_ok:
            compiled = context.compile(source, Side.CANARY, None)
            for text in (compiled.value, compiled.sample):
                error = promql_error(text) if text is not None else None
                if error is not None:
                    out.append(
                        Finding(
                            (*loc, field),
                            f"compiles to invalid PromQL: {error}, in {_short(text or '')}",
                        )
                    )
                    break
    if sample is not None and not templates.unknown_variables(sample) and selectors_ok:
        rendered = templates.render(sample, context.variables(Side.CANARY))
        error = promql_error(rendered)
        if error is not None:
            out.append(Finding((*loc, "sampleQuery"), f"not valid PromQL: {error}"))
    return out


def _matcher_sets(spec: object) -> list[tuple[str, Mapping[str, str]]]:
    if isinstance(spec, CounterRatio):
        return [("numerator", spec.numerator), ("denominator", spec.denominator)]
    matchers: Mapping[str, str] = getattr(spec, "matchers", {})
    return [("matchers", matchers)]


def _ratio(ratio: CounterRatio, loc: Loc) -> list[Finding]:
    """The numerator must count a strict subset of the denominator's series.

    Over two counters (`denominatorMetric`) the series differ by design: nothing to check
    (an empty numerator there counts every event of its counter, e.g. all upstream errors).
    """
    num, den = ratio.numerator, ratio.denominator
    if ratio.per_event:
        return []
    if not num:
        return [
            Finding(
                (*loc, "numerator"),
                "an empty numerator counts every series the denominator counts: the ratio is "
                "always 1 (or more); name the failures, e.g. {status_code: '502'}",
            )
        ]
    if num == den:
        return [
            Finding(
                (*loc, "numerator"),
                "numerator and denominator select the same series: the ratio is always 1",
            )
        ]
    out = []
    for label, value in den.items():
        mine = num.get(label)
        if mine is None:
            out.append(
                Finding(
                    (*loc, "numerator"),
                    f"the denominator's matcher {label}: {value!r} is missing here: the numerator "
                    "must select a subset of the denominator's series (repeat it)",
                )
            )
        elif mine != value and not any(v.startswith(("=~", "!~", "!=")) for v in (mine, value)):
            out.append(
                Finding(
                    (*loc, "numerator", label),
                    f"{label}: {mine!r} here but {value!r} in the denominator: the numerator "
                    "would count series the denominator does not",
                )
            )
    return out


def _short(text: str) -> str:
    return repr(text) if len(text) <= 120 else repr(text[:117] + "...")
