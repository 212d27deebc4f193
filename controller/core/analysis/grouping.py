"""Shared queries (pure): one PromQL per template and namespace, split per rollout in Python.

Rollouts whose metrics compile from the same template differ only in the pods they select:
``namespace="ns",pod=~"<deployment>-<hash>-<suffix>"`` (the default selectors). Such a
source is compiled to queries aggregated ``by (pod)`` over the whole namespace - the same for
every rollout there - and each rollout's value is folded from the per-pod answers of its own
pods: those its side's pod regex matches, found by the Deployment owning each pod (`owner`,
equivalent to the anchored regex), so a rollout's fold reads its own pods only.

What is shareable (`shareable`): structured sources (``counterRatio``, ``rate``, ``gauge``
with ``sum``/``min``/``max``, ``histogramQuantile``) under the default selectors. Raw
``query`` templates (any PromQL: it cannot be split by pod in general), ``gauge`` with ``avg``
(an average of averages is not the average) and custom ``selectors`` keep their own query.

The fold is the compiled query's arithmetic, exactly:

* ``counterRatio``: numerator and denominator summed over the side's pods; a numerator without
  series is 0 (``or vector(0)``), a denominator without series is no data, 0/0 is NaN (no
  data); the request count is the denominator's sum. Counts are ``counted()`` per series, so
  first appearances and Wilson bounds see the same integers as the per-rollout query.
* ``rate``: the per-pod rates summed; the request count likewise from ``increase``.
* ``gauge``: ``sum`` (NaN propagates), ``min``/``max`` (NaN skipped) over the pods' aggregates.
* ``histogramQuantile``: buckets summed per ``le`` over the side's pods, then Prometheus'
  classic-bucket interpolation (`controller.core.analysis.quantile.histogram_quantile`); the request
  count from ``_count`` summed.

Sums are `math.fsum` (exactly rounded, so independent of the order pods come back in): a
rollout evaluated on its own (`GroupedQuery` with its pod regex, e.g. ``evaluate_soon``) and
the same rollout folded from a namespace-wide answer get identical numbers.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from controller.core.analysis.quantile import histogram_quantile
from controller.core.analysis.templates import counted, matcher_text, pod_regex
from controller.core.config.model import Rollout, Selectors, Side, Source

# One per-pod query's answer: (pod, le) -> value; le is "" unless grouped by it.
PerPod = Mapping[tuple[str, str], float]
# The same answer by the Deployment owning each pod: deployment -> [(le, value)].
ByOwner = Mapping[str, Sequence[tuple[str, float]]]

# The two dash-free segments `pod_regex` puts after a Deployment's name.
_HASH = re.compile(r"[a-z0-9]{1,10}")
_SUFFIX = re.compile(r"[a-z0-9]{5}")

_DEFAULT_SELECTORS = Selectors()


@dataclass(frozen=True)
class GroupedQuery:
    """A source compiled to per-pod queries and how to fold them into one side's value.

    `value` and `sample` are keys of the answers `fold` reads (the queries themselves);
    ``numerator`` is only set for a counter ratio, whose value is numerator / `value`.
    """

    kind: str  # "ratio", "rate", "sum", "min", "max", "quantile"
    value: str
    sample: str | None
    numerator: str | None = None
    quantile: float = 0.0

    def queries(self) -> tuple[str, ...]:
        """Every query the fold needs, each once."""
        found = (self.numerator, self.value, self.sample)
        return tuple(dict.fromkeys(q for q in found if q is not None))


def shareable(selectors: Selectors, source: Source) -> bool:
    """Whether `source` can be answered from namespace-wide per-pod queries (module doc)."""
    if selectors != _DEFAULT_SELECTORS:
        return False
    if source.gauge is not None:
        return source.gauge.aggregate != "avg"
    return (
        source.counter_ratio is not None
        or source.rate is not None
        or source.histogram_quantile is not None
    )


def side_deployments(rollout: Rollout, side: Side) -> tuple[str, ...]:
    """The Deployments whose pods are the side's."""
    if side is Side.SERVICE:
        return (rollout.stable.deployment, rollout.canary.deployment)
    return ((rollout.canary if side is Side.CANARY else rollout.stable).deployment,)


def owner(pod: str) -> str | None:
    """The Deployment whose `pod_regex` matches `pod` (None for a name no such regex matches).

    ``<deployment>-<hash>-<suffix>`` with two dash-free segments: splitting off the last two
    dashes is the one way the regex can match, so `side_pattern(...).fullmatch(pod)` holds
    exactly when `owner(pod)` is one of the side's Deployments. A fleet's per-pod answer is
    indexed by owner once, and each rollout reads its own pods without scanning the others.
    """
    parts = pod.rsplit("-", 2)
    if len(parts) == 3 and _HASH.fullmatch(parts[1]) and _SUFFIX.fullmatch(parts[2]):
        return parts[0]
    return None


def by_owner(answer: PerPod) -> dict[str, list[tuple[str, float]]]:
    """A per-pod answer indexed by the Deployment owning each pod (others dropped)."""
    out: dict[str, list[tuple[str, float]]] = {}
    for (pod, le), value in answer.items():
        deployment = owner(pod)
        if deployment is not None:
            out.setdefault(deployment, []).append((le, value))
    return out


def side_pattern(rollout: Rollout, side: Side) -> re.Pattern[str]:
    """The side's pod regex as PromQL applies it (anchored), for matching in Python."""
    deployments = {
        Side.CANARY: [rollout.canary.deployment],
        Side.STABLE: [rollout.stable.deployment],
        Side.SERVICE: [rollout.stable.deployment, rollout.canary.deployment],
    }[side]
    # pod_regex() escapes for a PromQL string literal; PromQL unescapes `\\` to `\`.
    patterns = [pod_regex(d).replace("\\\\", "\\") for d in deployments]
    return re.compile("|".join(f"(?:{p})" for p in patterns))


def grouped_query(
    source: Source, namespace: str, window: str, pod: str | None = None
) -> GroupedQuery:
    """Per-pod PromQL for `source` in `namespace`; only pods matching `pod` when given.

    Without `pod` the queries are the same for every rollout of the namespace: the shared
    form. With it (the side's pod regex, PromQL-escaped) they are one rollout's own queries.
    ValueError for a source `shareable` rejects.
    """
    sel = matcher_text({"namespace": namespace} | ({"pod": f"=~{pod}"} if pod else {}))

    def series(metric: str, matchers: Mapping[str, str]) -> str:
        extra = matcher_text(matchers)
        return f"{metric}{{{sel}{',' + extra if extra else ''}}}"

    if source.counter_ratio is not None:
        c = source.counter_ratio
        num = counted(series(c.metric, c.numerator), window)
        den = counted(series(c.denominator_metric or c.metric, c.denominator), window)
        den_q = f"sum by (pod) ({den})"
        return GroupedQuery("ratio", den_q, den_q, numerator=f"sum by (pod) ({num})")
    if source.rate is not None:
        s = series(source.rate.metric, source.rate.matchers)
        return GroupedQuery(
            "rate", f"sum by (pod) (rate({s}[{window}]))", f"sum by (pod) (increase({s}[{window}]))"
        )
    if source.gauge is not None and source.gauge.aggregate != "avg":
        g = source.gauge
        return GroupedQuery(
            g.aggregate, f"{g.aggregate} by (pod) ({series(g.metric, g.matchers)})", None
        )
    if source.histogram_quantile is not None:
        h = source.histogram_quantile
        buckets = series(f"{h.metric}_bucket", h.matchers)
        count = series(f"{h.metric}_count", h.matchers)
        return GroupedQuery(
            "quantile",
            f"sum by (pod, le) (rate({buckets}[{window}]))",
            f"sum by (pod) (increase({count}[{window}]))",
            quantile=h.quantile,
        )
    raise ValueError("source cannot be shared (raw query or gauge avg)")


def grouped_for(
    rollout: Rollout, source: Source, side: Side, window_s: str, shared: bool
) -> GroupedQuery:
    """`grouped_query` for a rollout's side: the namespace-wide form or its own pods only."""
    pod = None if shared else _side_regex(rollout, side)
    return grouped_query(source, rollout.namespace, window_s, pod)


def _side_regex(rollout: Rollout, side: Side) -> str:
    if side is Side.SERVICE:
        return f"({pod_regex(rollout.stable.deployment)}|{pod_regex(rollout.canary.deployment)})"
    ref = rollout.canary if side is Side.CANARY else rollout.stable
    return pod_regex(ref.deployment)


def _sum(values: Sequence[float]) -> float:
    if any(math.isnan(v) for v in values):
        return math.nan  # fsum raises on NaN mixed with inf; PromQL's sum propagates NaN
    return math.fsum(values)


def fold(
    query: GroupedQuery,
    answers: Mapping[str, ByOwner],
    deployments: Sequence[str],
) -> tuple[float | None, float | None]:
    """(value, request count) of one side from the per-pod answers; None is no data.

    `answers` maps each of ``query.queries()`` to its result indexed by `by_owner`;
    `deployments` are the side's (`side_deployments`). The request count is None when the
    source has none, 0.0 when no series matched.
    """

    def mine(key: str) -> list[tuple[str, float]]:
        answer = answers[key]
        return [pair for d in deployments for pair in answer.get(d, ())]

    requests: float | None = None
    if query.sample is not None:
        counts = [v for _, v in mine(query.sample)]
        requests = _sum(counts) if counts else 0.0
        if math.isnan(requests):
            requests = 0.0  # as the per-rollout query's NaN count: no data, i.e. 0 requests
    value: float | None
    if query.kind == "ratio":
        assert query.numerator is not None
        dens = [v for _, v in mine(query.value)]
        if not dens:
            value = None
        else:
            nums = [v for _, v in mine(query.numerator)]
            value = _divide(_sum(nums) if nums else 0.0, _sum(dens))
    elif query.kind in ("rate", "sum"):
        values = [v for _, v in mine(query.value)]
        value = _sum(values) if values else None
    elif query.kind in ("min", "max"):
        values = [v for _, v in mine(query.value)]
        numbers = [v for v in values if not math.isnan(v)]
        if not values:
            value = None
        elif not numbers:
            value = math.nan
        else:
            value = min(numbers) if query.kind == "min" else max(numbers)
    elif query.kind == "quantile":
        by_le: dict[float, list[float]] = {}
        for le_text, v in mine(query.value):
            try:
                le = float(le_text)
            except ValueError:
                continue
            by_le.setdefault(le, []).append(v)
        if not by_le:
            value = None
        else:
            buckets = {le: _sum(vs) for le, vs in by_le.items()}
            value = histogram_quantile(query.quantile, buckets)
    else:
        raise ValueError(f"unknown grouped query kind {query.kind!r}")
    if value is not None and math.isnan(value):
        value = None
    return value, requests


def _divide(numerator: float, denominator: float) -> float:
    """IEEE division as PromQL does it: x/0 is ±Inf, 0/0 is NaN."""
    if denominator == 0:
        if numerator == 0 or math.isnan(numerator):
            return math.nan
        return math.copysign(math.inf, numerator) * math.copysign(1.0, denominator)
    return numerator / denominator


__all__ = [
    "ByOwner",
    "GroupedQuery",
    "by_owner",
    "fold",
    "grouped_for",
    "grouped_query",
    "owner",
    "shareable",
    "side_deployments",
    "side_pattern",
]
