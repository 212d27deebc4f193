"""Shared queries: one per-pod query per (template, namespace, window, tick), split per rollout.

A fake Prometheus client answers both query shapes - the namespace-wide one and a rollout's
own (``pod=~"<regex>"``) - from one data set of per-pod values, so the provider's sharing,
coalescing and folding are checked against its per-rollout evaluation; the real Prometheus
test is in tests/integration/test_shared_queries_prometheus.py.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.core.analysis.evaluate import Verdict, evaluate
from controller.core.analysis.grouping import (
    GroupedQuery,
    by_owner,
    fold,
    grouped_query,
    owner,
    shareable,
    side_deployments,
    side_pattern,
)
from controller.core.config.model import (
    Metric,
    PrometheusSettings,
    Rollout,
    Selectors,
    Side,
    Source,
)
from controller.shell.providers.promclient import QueryFailed
from controller.shell.providers.prometheus import PrometheusProvider

TICK = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
WINDOW = "120s"  # as the templates render a 2m window

METRICS: list[dict[str, Any]] = [
    {
        "name": "errors",
        "counterRatio": {"metric": "reqs_total", "numerator": {"code": "=~5.."}},
        "max": 0.05,
        "compare": {"factor": 1.5, "slack": 0.01},
        "minRequests": 20,
    },
    {
        "name": "pressure",
        "counterRatio": {
            "metric": "upstream_total",
            "numerator": {"type": "429"},
            "denominatorMetric": "reqs_total",
        },
        "max": 0.25,
    },
    {
        "name": "p95",
        "histogramQuantile": {"metric": "duration_seconds", "quantile": 0.95},
        "max": 2.0,
        "compare": {"factor": 2.0},
    },
    {"name": "limit", "gauge": {"metric": "limit_rps", "aggregate": "min"}, "min": 1.0},
    {"name": "limit-sum", "gauge": {"metric": "limit_rps"}, "min": 1.0},
    {"name": "rps", "rate": {"metric": "reqs_total"}, "min": 0.0},
    # Raw templates are never shared: each rollout keeps its own query.
    {"name": "raw", "query": 'sum(up{namespace="{{ namespace }}"})', "min": 0.0},
]
SHARED_METRICS = [m for m in METRICS if "query" not in m]


def rollout(name: str, namespace: str, stable: str, canary: str) -> Rollout:
    return Rollout.model_validate(
        {
            "name": name,
            "namespace": namespace,
            "service": name,
            "stable": {"deployment": stable},
            "canary": {"deployment": canary, "version": "v2"},
            "steps": [{"weight": 50}],
            "analysis": {"window": WINDOW, "minRequests": 10, "metrics": METRICS},
        }
    )


# -- the fake Prometheus: per-pod values by query shape ------------------------------------

_NAMESPACE = re.compile(r'namespace="([^"]*)"')
_POD = re.compile(r',pod=~"((?:[^"\\]|\\.)*)"')


def shape(promql: str) -> tuple[str, str, re.Pattern[str] | None]:
    """(namespace, the query without namespace and pod matchers, the pod filter)."""
    ns = _NAMESPACE.search(promql)
    assert ns is not None, promql
    pod = _POD.search(promql)
    pattern = re.compile(pod.group(1).replace("\\\\", "\\")) if pod else None
    key = _POD.sub("", _NAMESPACE.sub('namespace="NS"', promql))
    return ns.group(1), key, pattern


@dataclass
class FakeClient:
    """Answers per-pod queries from `data[(namespace, pod)][shape] = {le: value}`."""

    data: dict[tuple[str, str], dict[str, dict[str, float]]]
    failing: set[str] = field(default_factory=set)  # shapes that fail
    sent: list[str] = field(default_factory=list)
    url: str = "http://fake"
    timeout: float = 5.0
    settings: PrometheusSettings = field(default_factory=PrometheusSettings)

    def deadline(self) -> float:
        return time.monotonic() + self.timeout

    async def instant(self, promql: str, deadline: float, at: float | None = None) -> Any:
        self.sent.append(promql)
        await asyncio.sleep(0)  # let the other members of the tick join
        if promql.startswith("sum(up"):
            return [{"metric": {}, "value": [0, "1"]}]
        namespace, key, pods = shape(promql)
        assert key in KNOWN_SHAPES, f"a query the data set does not know: {promql}"
        if key in self.failing:
            raise QueryFailed("HTTP 503 unavailable after 3 attempts", transient=True)
        result = []
        for (ns, pod), shapes in sorted(self.data.items()):
            if ns != namespace or key not in shapes or (pods and not pods.fullmatch(pod)):
                continue
            for le, value in shapes[key].items():
                labels = {"pod": pod} | ({"le": le} if le else {})
                result.append({"metric": labels, "value": [0, repr(value)]})
        return result

    async def close(self) -> None:
        pass


def shapes_of(source: Source) -> list[tuple[str, bool]]:
    """The template's per-pod query shapes, and whether each is grouped by `le`."""
    grouped = grouped_query(source, "NS", WINDOW)
    return [(q, "le)" in q) for q in grouped.queries()]


# Distinct: two metrics with the same denominator share its query too.
ALL_SHAPES = list(
    dict.fromkeys(s for m in SHARED_METRICS for s in shapes_of(Metric.model_validate(m)))
)
KNOWN_SHAPES = {key for key, _ in ALL_SHAPES}
LES = ("0.5", "1", "2.5", "+Inf")

values = st.one_of(
    st.integers(0, 500).map(float),
    st.floats(0, 100, allow_nan=False),
    st.just(math.nan),
)


@st.composite
def fleets(draw: st.DrawFn) -> tuple[list[Rollout], FakeClient]:
    rollouts: list[Rollout] = []
    data: dict[tuple[str, str], dict[str, dict[str, float]]] = {}
    for n_ns in range(draw(st.integers(1, 2))):
        namespace = f"ns{n_ns}"
        for i in range(draw(st.integers(1, 5))):
            stable, canary = f"app{i}", f"app{i}-v2"
            rollouts.append(rollout(f"{namespace}-app{i}", namespace, stable, canary))
            for deployment in (stable, canary):
                for p in range(draw(st.integers(0, 2))):
                    pod = f"{deployment}-5f6b7c8d9-pod{p:02d}"
                    shapes: dict[str, dict[str, float]] = {}
                    for key, by_le in ALL_SHAPES:
                        if draw(st.booleans()):  # some series exist, some do not
                            if by_le:
                                shapes[key] = {le: draw(values) for le in LES}
                            else:
                                shapes[key] = {"": draw(values)}
                    data[(namespace, pod)] = shapes
    return rollouts, FakeClient(data)


def provider(client: FakeClient) -> PrometheusProvider:
    return PrometheusProvider(PrometheusSettings(), client=client)  # type: ignore[arg-type]


def same(a: Any, b: Any) -> bool:
    """Equal, with NaN equal to NaN (a sample's value is never NaN, but be exact anyway)."""
    return repr(a) == repr(b)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fleets())
def test_shared_and_per_rollout_evaluation_give_identical_values_and_verdicts(
    fleet: tuple[list[Rollout], FakeClient],
) -> None:
    rollouts, client = fleet

    async def run() -> None:
        shared = provider(client)
        together = await asyncio.gather(
            *(shared.measure(r, r.analysis, tick=TICK) for r in rollouts)
        )
        sent_shared = list(client.sent)
        client.sent.clear()
        alone = provider(client)
        separate = [await alone.measure(r, r.analysis) for r in rollouts]
        for r, a, b in zip(rollouts, together, separate, strict=True):
            assert same(a, b), r.name
            verdicts = [
                evaluate(r.analysis.metrics, m, r.analysis.min_requests, TICK, None) for m in (a, b)
            ]
            assert same(verdicts[0], verdicts[1])
        # One query per shape and namespace, plus each rollout's own raw query.
        namespaces = {r.namespace for r in rollouts}
        assert len(sent_shared) == len(ALL_SHAPES) * len(namespaces) + len(rollouts)
        assert len(client.sent) > len(sent_shared) or len(rollouts) == 1

    asyncio.run(run())


async def test_a_failed_group_query_is_an_error_for_every_member_never_a_pass() -> None:
    errors_den = shapes_of(Metric.model_validate(METRICS[0]))
    client = FakeClient({}, failing={errors_den[1][0]})  # the 5xx ratio's denominator
    members = [rollout(f"r{i}", "ns", f"app{i}", f"app{i}-v2") for i in range(4)]
    p = provider(client)
    measured = await asyncio.gather(*(p.measure(r, r.analysis, tick=TICK) for r in members))
    for r, m in zip(members, measured, strict=True):
        sample = m["errors"].canary
        assert sample.value is None and sample.error is not None
        assert "HTTP 503 unavailable after 3 attempts (query: sum by (pod) (" in sample.error
        summary = evaluate(r.analysis.metrics, m, r.analysis.min_requests, TICK, None)
        assert {x.name: x.verdict for x in summary.metrics}["errors"] is Verdict.ERROR
    failing_sent = [q for q in client.sent if shape(q)[1] in client.failing]
    assert len(failing_sent) == 1  # asked once for the four of them


async def test_a_late_member_of_an_older_tick_asks_on_its_own() -> None:
    client = FakeClient({})
    p = provider(client)
    r = rollout("r", "ns", "app", "app-v2")
    await p.measure(r, r.analysis, tick=TICK)
    first = len(client.sent)
    await p.measure(r, r.analysis, tick=TICK)  # the same tick: answered from the shared result
    assert len(client.sent) == first + 1  # only the raw query again
    await p.measure(r, r.analysis, tick=TICK + timedelta(seconds=30))
    assert len(client.sent) == 2 * first + 1  # a new tick: new queries
    await p.measure(r, r.analysis, tick=TICK)  # late: not the newest tick's answer
    assert len(client.sent) == 3 * first + 1  # its own, each query once for all its metrics


# -- the fold's arithmetic -----------------------------------------------------------------

PODS = ("web-v2",)  # the canary side's Deployments
CANARY = "web-v2-5f6b7c8d9-abcde"
OTHER = "web-5f6b7c8d9-abcde"


def ratio() -> GroupedQuery:
    return grouped_query(Metric.model_validate(METRICS[0]), "ns", WINDOW)


def answers(q: GroupedQuery, **by_query: dict[tuple[str, str], float]) -> dict[str, Any]:
    names = {"num": q.numerator, "den": q.value, "sample": q.sample}
    out: dict[str, Any] = {k: {} for k in q.queries()}
    for name, values_ in by_query.items():
        out[names[name] or ""] = by_owner(values_)
    return out


def test_ratio_without_numerator_series_is_zero_and_without_denominator_no_data() -> None:
    q = ratio()
    assert fold(q, answers(q, den={(CANARY, ""): 40.0, (OTHER, ""): 1000.0}), PODS) == (0.0, 40.0)
    assert fold(q, answers(q, num={(CANARY, ""): 3.0}), PODS) == (None, 0.0)
    zero = answers(q, num={(CANARY, ""): 0.0}, den={(CANARY, ""): 0.0})
    assert fold(q, zero, PODS) == (None, 0.0)  # 0/0: no traffic in the window
    some = answers(q, num={(CANARY, ""): 3.0}, den={(CANARY, ""): 0.0})
    assert fold(q, some, PODS) == (math.inf, 0.0)  # PromQL's 3/0


def test_other_pods_never_count() -> None:
    q = ratio()
    both = answers(
        q,
        num={(CANARY, ""): 3.0, (OTHER, ""): 500.0},
        den={(CANARY, ""): 60.0, (OTHER, ""): 600.0},
    )
    assert fold(q, both, PODS) == (0.05, 60.0)


def test_min_skips_nan_and_sum_propagates_it() -> None:
    low = grouped_query(Metric.model_validate(METRICS[3]), "ns", WINDOW)
    total = grouped_query(Metric.model_validate(METRICS[4]), "ns", WINDOW)
    second = "web-v2-5f6b7c8d9-fghij"
    per_pod = {(CANARY, ""): math.nan, (second, ""): 4.0}
    assert fold(low, {low.value: by_owner(per_pod)}, PODS) == (4.0, None)
    assert fold(total, {total.value: by_owner(per_pod)}, PODS) == (None, None)


def test_histogram_buckets_are_summed_per_le_before_the_quantile() -> None:
    q = grouped_query(Metric.model_validate(METRICS[2]), "ns", WINDOW)
    second = "web-v2-5f6b7c8d9-fghij"
    buckets = {
        (CANARY, "1"): 10.0,
        (CANARY, "+Inf"): 10.0,
        (second, "1"): 0.0,
        (second, "+Inf"): 10.0,
    }
    value, _ = fold(q, {q.value: by_owner(buckets), q.sample or "": {}}, PODS)
    # 20 observations, 10 at most 1 s: the 95th percentile is in (1, +Inf] -> the last bound.
    assert value == 1.0


def test_what_is_shareable() -> None:
    default = Selectors()
    assert all(shareable(default, Metric.model_validate(m)) for m in SHARED_METRICS)
    assert not shareable(default, Metric.model_validate(METRICS[-1]))  # raw query
    avg = Source.model_validate({"gauge": {"metric": "x", "aggregate": "avg"}})
    assert not shareable(default, avg)
    custom = Selectors(canary='pod=~"{{ canary_pod_regex }}"')
    assert not shareable(custom, Metric.model_validate(METRICS[0]))


def test_side_patterns_are_anchored_and_do_not_take_a_longer_deployments_pods() -> None:
    r = rollout("r", "ns", "web", "web-v2")
    stable = side_pattern(r, Side.STABLE)
    assert stable.fullmatch(OTHER)
    assert not stable.fullmatch(CANARY)
    assert not stable.fullmatch("web-redis-0")
    assert side_pattern(r, Side.SERVICE).fullmatch(CANARY)


names = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,8}[a-z0-9])?(\.[a-z0-9]{1,3})?", fullmatch=True)


@given(names, names, st.text(alphabet="ab09-", max_size=8), st.text(alphabet="ab09-", max_size=7))
def test_the_owner_index_picks_exactly_the_pods_the_pod_regex_matches(
    stable: str, canary: str, middle: str, suffix: str
) -> None:
    r = rollout("r", "ns", stable, canary + "x")
    for base in (stable, canary + "x", canary, stable + "-v2"):
        pod = f"{base}-{middle}-{suffix}"
        for side in Side:
            by_regex = side_pattern(r, side).fullmatch(pod) is not None
            assert by_regex == (owner(pod) in side_deployments(r, side)), (pod, side)
