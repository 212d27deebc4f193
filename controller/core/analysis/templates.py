"""Query templates: the variables a template may use, rendering, and structured metric -> PromQL.

Templates use ``{{ name }}`` placeholders (PromQL itself never contains ``{{``). Only the
variables in ``KNOWN_VARIABLES`` exist; anything else is a validation error, so a typo cannot
silently render a query that matches nothing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from controller.core.config.model import Rollout, Side, Source

_PLACEHOLDER = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")

# Variables about the rollout as a whole.
ROLLOUT_VARIABLES = (
    "namespace",
    "service",
    "window",
    "stable_deployment",
    "canary_deployment",
    "stable_version",
    "canary_version",
    "stable_pod_regex",
    "canary_pod_regex",
    "service_pod_regex",
)
# Variables bound to the side a query is evaluated for (canary, stable or the whole service),
# so one template serves both sides of a comparison.
SIDE_VARIABLES = ("deployment", "version", "pod_regex", "selector")
KNOWN_VARIABLES = frozenset(ROLLOUT_VARIABLES + SIDE_VARIABLES)


class TemplateError(ValueError):
    """A template uses a variable that does not exist."""


def variables_in(template: str) -> list[str]:
    """Every placeholder name in a template, in order."""
    return [m.group(1) for m in _PLACEHOLDER.finditer(template)]


def unknown_variables(template: str) -> list[str]:
    """Placeholders that are not known variables (empty list when the template is fine)."""
    return [v for v in variables_in(template) if v not in KNOWN_VARIABLES]


def render(template: str, variables: Mapping[str, str]) -> str:
    """Substitute every placeholder; TemplateError for one that has no value."""

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in variables:
            known = ", ".join(sorted(KNOWN_VARIABLES))
            raise TemplateError(f"unknown template variable {{{{ {name} }}}} (known: {known})")
        return variables[name]

    return _PLACEHOLDER.sub(substitute, template)


def promql_duration(delta: timedelta) -> str:
    """A PromQL range duration: whole seconds where possible, else milliseconds."""
    ms = round(delta.total_seconds() * 1000)
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def pod_regex(deployment: str) -> str:
    """RE2 pattern matching the pods a Deployment owns: ``<deployment>-<hash>-<suffix>``.

    Two dash-free segments after the name (the pod-template-hash, at most 10 characters, and
    a 5-character suffix), so ``zai-proxy``'s pattern matches neither ``zai-proxy-v2``'s pods
    nor a StatefulSet's ``zai-proxy-redis-0``.
    """
    return re.sub(r"([.])", r"\\\\\1", deployment) + "-[a-z0-9]{1,10}-[a-z0-9]{5}"


def counted(series: str, window: str) -> str:
    """PromQL for the events each counter series counted in the window, first ones included.

    A series created by its first event (zai-proxy's ``status_code="502"`` series, every
    series of a new pod) has no sample before it, so ``increase()`` cannot see the events
    before its first scrape: a pod's first 502 is lost, and it extrapolates the rest from the
    samples it has. Per series this counts instead, without extrapolation:

    1. a series present at the window's start (``offset``) without a reset in the window: its
       last value in the window minus its value at the start;
    2. a series absent at the start: its last value - it was created, from 0, in the window;
    3. a series present at the start with a reset in the window (a restarted process): no
       exact count exists, so ``increase()``.

    Counts then run from the last scrape at or before the window's start to the last scrape
    in it, as each series' own samples say. What PromQL cannot do: count events after a pod's
    last scrape before it went away (no sample ever holds them); count a series created and
    then reset within the window other than from its last start; or tell "created in the
    window" from "no sample at the window's start" - a series that was stale then (its pod
    unreachable) or last seen more than the lookback delta (5 m) before counts its whole
    value, events before the window included.
    """
    last = f"last_over_time({series}[{window}])"
    start = f"{series} offset {window}"
    return (
        f"(({last} - {start}) unless resets({series}[{window}]) > 0)"
        f" or ({last} unless {start})"
        f" or increase({series}[{window}])"
    )


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def matcher_text(matchers: Mapping[str, str]) -> str:
    """``{label: value}`` -> PromQL matchers; a value may start with =~, != or !~."""
    parts = []
    for label, raw in sorted(matchers.items()):
        op, value = "=", raw
        for prefix in ("=~", "!=", "!~"):
            if raw.startswith(prefix):
                op, value = prefix, raw[len(prefix) :]
                break
        parts.append(f"{label}{op}{_quote(value)}")
    return ",".join(parts)


def _join(*parts: str) -> str:
    return ",".join(p for p in parts if p)


@dataclass(frozen=True)
class CompiledQuery:
    """The PromQL for one side of one source, plus the request-count query where one exists."""

    side: Side
    value: str
    sample: str | None


class QueryContext:
    """Renders a rollout's templates for a side and window."""

    def __init__(self, rollout: Rollout, window: timedelta) -> None:
        self.rollout = rollout
        self.window = window
        stable_regex = pod_regex(rollout.stable.deployment)
        canary_regex = pod_regex(rollout.canary.deployment)
        self._base: dict[str, str] = {
            "namespace": rollout.namespace,
            "service": rollout.service,
            "window": promql_duration(window),
            "stable_deployment": rollout.stable.deployment,
            "canary_deployment": rollout.canary.deployment,
            "stable_version": rollout.stable.version or "",
            "canary_version": rollout.canary.version,
            "stable_pod_regex": stable_regex,
            "canary_pod_regex": canary_regex,
            "service_pod_regex": f"({stable_regex}|{canary_regex})",
        }

    def variables(self, side: Side) -> dict[str, str]:
        """All variables with the side-bound ones set for `side`."""
        values = dict(self._base)
        if side is Side.SERVICE:
            values.update(deployment="", version="", pod_regex=values["service_pod_regex"])
        else:
            ref = self.rollout.canary if side is Side.CANARY else self.rollout.stable
            values.update(
                deployment=ref.deployment,
                version=ref.version or "",
                pod_regex=pod_regex(ref.deployment),
            )
        selector_template = self.rollout.analysis.selectors.for_side(side)
        values["selector"] = render(selector_template, values | {"selector": ""})
        return values

    def compile(self, source: Source, side: Side, sample_query: str | None = None) -> CompiledQuery:
        """The PromQL for `source` evaluated on `side`."""
        v = self.variables(side)
        sel, w = v["selector"], v["window"]
        if source.query is not None:
            sample = render(sample_query, v) if sample_query else None
            return CompiledQuery(side, render(source.query, v), sample)
        if source.counter_ratio is not None:
            c = source.counter_ratio
            den_metric = c.denominator_metric or c.metric
            num = counted(f"{c.metric}{{{_join(sel, matcher_text(c.numerator))}}}", w)
            den = counted(f"{den_metric}{{{_join(sel, matcher_text(c.denominator))}}}", w)
            return CompiledQuery(
                side,
                # A numerator series that was never created (no 502 yet) is a 0, not "no data";
                # an empty denominator (or none in the window: 0/0) still gives no data.
                f"(sum({num}) or vector(0)) / sum({den})",
                f"sum({den})",
            )
        if source.gauge is not None:
            g = source.gauge
            series = f"{g.metric}{{{_join(sel, matcher_text(g.matchers))}}}"
            return CompiledQuery(side, f"{g.aggregate}({series})", None)
        if source.histogram_quantile is not None:
            h = source.histogram_quantile
            m = _join(sel, matcher_text(h.matchers))
            buckets = f"{h.metric}_bucket{{{m}}}[{w}]"
            return CompiledQuery(
                side,
                f"histogram_quantile({h.quantile:g}, sum by (le) (rate({buckets})))",
                f"sum(increase({h.metric}_count{{{m}}}[{w}]))",
            )
        if source.rate is not None:
            r = source.rate
            series = f"{r.metric}{{{_join(sel, matcher_text(r.matchers))}}}"
            return CompiledQuery(side, f"sum(rate({series}[{w}]))", f"sum(increase({series}[{w}]))")
        raise ValueError("source has no query or structured metric")
