"""The direct provider's arithmetic: PromQL's rate/increase, histogram_quantile, aggregation,
label matchers and gauge staleness over scraped pod histories. Pure: no I/O, no clock.

Expected values are worked out by hand in each test's comment, following Prometheus'
`extrapolatedRate` and `bucketQuantile` (promql/functions.go, promql/quantile.go).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.core.config.model import Source
from controller.shell.providers.exposition import ExpositionSample
from controller.shell.providers.window import (
    MatcherError,
    PodHistory,
    SideData,
    UnsupportedSource,
    aggregate,
    compile_matchers,
    evaluate_source,
    extrapolated_delta,
    histogram_quantile,
    ring_size,
)

INF = math.inf


def approx(x: float) -> object:
    return pytest.approx(x, rel=1e-9, abs=1e-12)


def scrape(
    history: PodHistory,
    at: float,
    samples: Iterable[tuple[str, dict[str, str], float]],
    *,
    retention: float = 1000.0,
) -> None:
    history.record(
        at,
        [ExpositionSample(name, tuple(labels.items()), value) for name, labels, value in samples],
        max_points=ring_size(retention, 1.0),
        keep_after=at - retention,
    )


def source(**kind: object) -> Source:
    return Source.model_validate(kind)


# -- rate and increase ------------------------------------------------------------------------


def test_rate_over_a_window_the_samples_cover() -> None:
    # Window [0, 60]; samples every 10 s at t=5..55, 100 -> 150. Increase 50 over 50 s sampled;
    # 5 s to each edge < 1.1 x 10 s, so extrapolate to the full 60 s: increase 60, rate 1/s.
    points = [(5.0 + 10 * i, 100.0 + 10 * i) for i in range(6)]
    assert extrapolated_delta(points, 0, 60, is_rate=False) == approx(60.0)
    assert extrapolated_delta(points, 0, 60, is_rate=True) == approx(1.0)


def test_rate_does_not_extrapolate_past_the_counters_zero() -> None:
    # As above but starting at 0: the zero point is at t=5, so nothing is added at the start.
    # Covered 50 + 0 + 5 = 55 s -> increase 50 x 55/50 = 55, rate 55/60.
    points = [(5.0 + 10 * i, 10.0 * i) for i in range(6)]
    assert extrapolated_delta(points, 0, 60, is_rate=False) == approx(55.0)
    assert extrapolated_delta(points, 0, 60, is_rate=True) == approx(55.0 / 60)


def test_rate_extrapolates_half_an_interval_for_a_series_that_starts_late() -> None:
    # A pod that appeared mid-window: samples t=40..60 (every 10 s), 1000 -> 1020. 40 s to the
    # start > 1.1 x 10 s: add half an interval (5 s) there; 0 s to the end. Covered 25 s:
    # increase 20 x 25/20 = 25, rate over the whole 60 s window 25/60 (not 1/s).
    points = [(40.0, 1000.0), (50.0, 1010.0), (60.0, 1020.0)]
    assert extrapolated_delta(points, 0, 60, is_rate=False) == approx(25.0)
    assert extrapolated_delta(points, 0, 60, is_rate=True) == approx(25.0 / 60)


def test_counter_reset_adds_the_value_before_the_reset() -> None:
    # 100 -> 110 (+10), reset to 5 (+5: it counted 5 since restarting), -> 15 (+10): 25.
    # Samples t=10..40 in [0, 40]: 10 s to the start < 11 s (zero point 30 x 100/25 = 120 s
    # away), 0 s to the end: covered 40 of 30 s sampled -> increase 25 x 4/3, rate / 40.
    points = [(10.0, 100.0), (20.0, 110.0), (30.0, 5.0), (40.0, 15.0)]
    assert extrapolated_delta(points, 0, 40, is_rate=False) == approx(25 * 4 / 3)
    assert extrapolated_delta(points, 0, 40, is_rate=True) == approx(25 * 4 / 3 / 40)


def test_two_resets_in_a_row() -> None:
    # 50 -> 3 (+3) -> 1 (+1) -> 4 (+3) = 7; samples fill [0, 30] exactly: no extrapolation.
    points = [(0.0, 50.0), (10.0, 3.0), (20.0, 1.0), (30.0, 4.0)]
    assert extrapolated_delta(points, 0, 30, is_rate=False) == approx(7.0)


def test_fewer_than_two_samples_have_no_rate() -> None:
    assert extrapolated_delta([], 0, 60, is_rate=True) is None
    assert extrapolated_delta([(10.0, 5.0)], 0, 60, is_rate=True) is None


@given(
    increments=st.lists(st.integers(0, 1000), min_size=1, max_size=30),
    resets=st.sets(st.integers(1, 30)),
)
def test_increase_without_extrapolation_counts_every_event(
    increments: list[int], resets: set[int]
) -> None:
    """Samples covering the window exactly: increase is the number of events, resets or not.

    A reset is only visible when the counter ends up lower than before (as for Prometheus).
    """
    value, points = 0.0, [(0.0, 0.0)]
    for i, inc in enumerate(increments, start=1):
        # A restarted process has counted only this scrape interval's events.
        value = inc if i in resets and inc < value else value + inc
        points.append((float(i), float(value)))
    got = extrapolated_delta(points, 0, len(increments), is_rate=False)
    assert got == pytest.approx(sum(increments))


# -- histogram_quantile -------------------------------------------------------------------------

BUCKETS = {0.1: 4.0, 0.25: 7.0, 0.5: 9.0, 1.0: 10.0, 2.5: 10.0, INF: 10.0}


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        # rank 9.5 falls in (0.5, 1]: 9 below it, 1 inside -> 0.5 + 0.5 x 0.5/1.
        (0.95, 0.75),
        # rank 5 in (0.1, 0.25]: 4 below, 3 inside -> 0.1 + 0.15 x 1/3.
        (0.5, 0.1 + 0.15 / 3),
        # rank 2 in the lowest bucket, which starts at 0 -> 0.1 x 2/4.
        (0.2, 0.05),
        # rank 10 = the whole count: the first bucket reaching it is (0.5, 1] -> its upper bound.
        (1.0, 1.0),
    ],
)
def test_quantile_interpolates_linearly(q: float, expected: float) -> None:
    assert histogram_quantile(q, BUCKETS) == approx(expected)


def test_quantile_in_the_inf_bucket_returns_the_last_finite_bound() -> None:
    assert histogram_quantile(0.5, {0.1: 1.0, 0.5: 2.0, INF: 10.0}) == 0.5


def test_quantile_edge_cases() -> None:
    assert math.isnan(histogram_quantile(0.5, {0.1: 1.0, 1.0: 2.0}))  # no +Inf bucket
    assert math.isnan(histogram_quantile(0.5, {INF: 3.0}))  # fewer than two buckets
    assert math.isnan(histogram_quantile(0.5, {0.1: 0.0, INF: 0.0}))  # no observations
    assert math.isnan(histogram_quantile(math.nan, BUCKETS))
    assert histogram_quantile(-0.1, BUCKETS) == -INF
    assert histogram_quantile(1.1, BUCKETS) == INF
    assert histogram_quantile(0.5, {-1.0: 5.0, INF: 10.0}) == -1.0  # lowest bound <= 0
    # Non-monotonic counts (buckets scraped at different instants) are raised to the max so
    # far: 0.25 becomes 7 -> rank 5 lies in (0.1, 0.25] as with BUCKETS.
    bumpy = {0.1: 7.0, 0.25: 4.0, 0.5: 9.0, 1.0: 10.0, INF: 10.0}
    assert histogram_quantile(0.5, bumpy) == approx(0.1 * 5 / 7)


# -- aggregation and matchers --------------------------------------------------------------------


def test_aggregates_treat_nan_like_promql() -> None:
    assert aggregate([1.0, 2.0, 6.0], "sum") == 9.0
    assert aggregate([1.0, 2.0, 6.0], "avg") == 3.0
    assert aggregate([1.0, 2.0, 6.0], "min") == 1.0
    assert aggregate([1.0, 2.0, 6.0], "max") == 6.0
    assert aggregate([], "sum") is None
    assert math.isnan(aggregate([1.0, math.nan], "sum") or 0.0)
    assert math.isnan(aggregate([1.0, math.nan], "avg") or 0.0)
    assert aggregate([math.nan, 3.0, 1.0], "min") == 1.0  # min/max skip NaN
    assert aggregate([math.nan, 3.0], "max") == 3.0
    assert math.isnan(aggregate([math.nan], "max") or 0.0)


@pytest.mark.parametrize(
    ("matchers", "labels", "matches"),
    [
        ({"code": "502"}, {"code": "502"}, True),
        ({"code": "502"}, {"code": "5021"}, False),
        ({"code": "!=502"}, {"code": "200"}, True),
        ({"code": "!=502"}, {"code": "502"}, False),
        ({"code": "=~5.."}, {"code": "503"}, True),
        ({"code": "=~5.."}, {"code": "5030"}, False),  # anchored at both ends
        ({"code": "=~5.."}, {"code": "1503"}, False),
        ({"code": "=~2..|5.."}, {"code": "200"}, True),  # alternation anchored as a whole
        ({"code": "!~5.."}, {"code": "200"}, True),
        ({"code": "!~5.."}, {"code": "502"}, False),
        ({"code": ""}, {}, True),  # an absent label is ""
        ({"code": "=~"}, {}, True),
        ({"code": "!="}, {}, False),
        ({"code": "=~.+"}, {}, False),
        ({"code": "!~.*"}, {"code": "x"}, False),
        ({"a": "1", "b": "=~x|y"}, {"a": "1", "b": "y"}, True),
        ({"a": "1", "b": "=~x|y"}, {"a": "2", "b": "y"}, False),
        ({"pod": "=~zai-proxy-v2-.*"}, {"pod": "zai-proxy-v2-abc-12345"}, True),
        ({"pod": "=~zai-proxy-.*"}, {"pod": "zai-proxy-v2-abc-12345"}, True),
        (
            {"pod": "=~zai-proxy-[a-z0-9]{1,10}-[a-z0-9]{5}"},
            {"pod": "zai-proxy-v2-abc-12345"},
            False,
        ),
    ],
)
def test_matchers(matchers: dict[str, str], labels: dict[str, str], matches: bool) -> None:
    compiled = compile_matchers(matchers)
    assert all(m.matches(labels) for m in compiled) is matches


def test_bad_regex_is_an_error_naming_the_label() -> None:
    with pytest.raises(MatcherError, match="invalid regex for label code"):
        compile_matchers({"code": "=~5(("})


# -- structured metrics over pod histories ----------------------------------------------------

REQS = "zai_proxy_requests_total"


def traffic(history: PodHistory, times: Iterable[float], per_s: dict[str, float]) -> None:
    """Scrape a pod whose request counters grow by `per_s[status]` each second from t=0."""
    for t in times:
        scrape(
            history,
            t,
            [
                (REQS, {"status_code": code, "variant": "v2"}, rate * t)
                for code, rate in per_s.items()
            ],
        )


def test_counter_ratio_sums_rates_over_the_sides_pods() -> None:
    # Two pods, samples every second over [0, 10] exactly: rates are exact.
    # Pod a: 9/s 200, 1/s 502; pod b: 20/s 200 -> 502 ratio 1 / 30; requests 300 in 10 s.
    a, b = PodHistory("a"), PodHistory("b")
    traffic(a, range(11), {"200": 9, "502": 1})
    traffic(b, range(11), {"200": 20})
    ratio = source(counterRatio={"metric": REQS, "numerator": {"status_code": "502"}})
    sample = evaluate_source(ratio, SideData([a, b]), now=10, window=10)
    assert sample.value == approx(1 / 30)
    assert sample.requests == approx(300)
    assert sample.error is None


def test_counter_ratio_without_numerator_series_is_zero_not_no_data() -> None:
    a = PodHistory("a")
    traffic(a, range(11), {"200": 5})
    ratio = source(counterRatio={"metric": REQS, "numerator": {"status_code": "502"}})
    assert evaluate_source(ratio, SideData([a]), now=10, window=10).value == 0.0


def test_counter_ratio_denominator_matchers_apply_to_the_denominator_only() -> None:
    a = PodHistory("a")
    traffic(a, range(11), {"200": 6, "429": 2, "502": 2})
    ratio = source(
        counterRatio={
            "metric": REQS,
            "numerator": {"status_code": "502"},
            "denominator": {"status_code": "!=429"},
        }
    )
    sample = evaluate_source(ratio, SideData([a]), now=10, window=10)
    assert sample.value == approx(2 / 8)
    assert sample.requests == approx(80)


def test_counter_ratio_over_two_counters_counts_events_per_denominator_event() -> None:
    # Upstream 429 attempts per client request: 6/s over 10/s of requests = 0.6; the request
    # count (for minRequests) is the denominator's, 100 in 10 s.
    a = PodHistory("a")
    for t in range(11):
        scrape(
            a,
            t,
            [
                (REQS, {"status_code": "200"}, 10.0 * t),
                ("zai_proxy_upstream_errors_total", {"error_type": "429"}, 6.0 * t),
                ("zai_proxy_upstream_errors_total", {"error_type": "502"}, 1.0 * t),
            ],
        )
    ratio = source(
        counterRatio={
            "metric": "zai_proxy_upstream_errors_total",
            "numerator": {"error_type": "429"},
            "denominatorMetric": REQS,
        }
    )
    sample = evaluate_source(ratio, SideData([a]), now=10, window=10)
    assert sample.value == approx(0.6)
    assert sample.requests == approx(100)


def test_counter_ratio_no_data_cases() -> None:
    ratio = source(counterRatio={"metric": REQS, "numerator": {"status_code": "502"}})
    # No pods, no series: no data and zero requests (minRequests then says inconclusive).
    assert evaluate_source(ratio, SideData([]), now=10, window=10) == _no_data(0.0)
    # One sample only in the window: no rate yet.
    a = PodHistory("a")
    traffic(a, [10], {"200": 5})
    assert evaluate_source(ratio, SideData([a]), now=10, window=10) == _no_data(0.0)
    # Denominator flat (no traffic): 0/0 is no data, not 0.
    b = PodHistory("b")
    for t in range(11):
        scrape(b, t, [(REQS, {"status_code": "200"}, 42.0)])
    assert evaluate_source(ratio, SideData([b]), now=10, window=10) == _no_data(0.0)


def _no_data(requests: float) -> object:
    from controller.core.analysis.evaluate import Sample

    return Sample(None, requests=requests)


def test_departed_pods_still_count_in_rates() -> None:
    # Pod a served [0, 5] and left; pod b serves [5, 10]; both at 10/s from a counter at 0.
    # Neither extrapolates before its zero point; a's 5 s gap to the end is more than 1.1
    # intervals, so it gets half an interval: a covers 5.5 s (increase 55), b 5 s (50).
    # Summed over the 10 s window: 10.5/s, close to the true 10/s; without a: 5/s.
    a, b = PodHistory("a"), PodHistory("b")
    traffic(a, range(6), {"200": 10})
    for t in range(5, 11):
        scrape(b, t, [(REQS, {"status_code": "200"}, 10.0 * (t - 5))])
    demand = source(rate={"metric": REQS})
    only_b = evaluate_source(demand, SideData([b]), now=10, window=10)
    both = evaluate_source(demand, SideData([b], departed=[a]), now=10, window=10)
    assert only_b.value == approx(5.0)
    assert both.value == approx(5.0 + 10 * 5.5 / 10)
    assert both.requests == approx(50 + 55)


def test_rate_with_matchers_and_a_reset() -> None:
    a = PodHistory("a")
    values = [0, 10, 20, 5, 15, 25]  # restarted between t=2 and t=3: +5 there
    for t, v in enumerate(values):
        scrape(a, t, [(REQS, {"status_code": "200"}, v), (REQS, {"status_code": "429"}, 1000.0)])
    only_200 = source(rate={"metric": REQS, "matchers": {"status_code": "=~2.."}})
    sample = evaluate_source(only_200, SideData([a]), now=5, window=5)
    assert sample.value == approx(45 / 5)
    assert sample.requests == approx(45)


def test_histogram_quantile_sums_buckets_by_le_across_pods() -> None:
    # Two pods, per second: pod a 4 <= 0.1, 3 in (0.1, 0.25], 2 in (0.25, 0.5], 1 in (0.5, 1];
    # pod b the same, but with `le` written "1.0" instead of "1": buckets match by value.
    # Summed: the BUCKETS distribution x2 -> p95 0.75 as above; requests = _count increase.
    h = "zai_proxy_request_duration_seconds"
    cumulative = {"0.1": 4, "0.25": 7, "0.5": 9, "1": 10, "+Inf": 10}
    a, b = PodHistory("a"), PodHistory("b")
    for t in range(11):
        for pod, one in ((a, "1"), (b, "1.0")):
            rows: list[tuple[str, dict[str, str], float]] = [
                (f"{h}_bucket", {"le": one if le == "1" else le, "status_code": "200"}, n * t)
                for le, n in cumulative.items()
            ]
            rows.append((f"{h}_count", {"status_code": "200"}, 10.0 * t))
            rows.append((f"{h}_bucket", {"le": "0.1", "status_code": "502"}, 0.0))
            scrape(pod, t, rows)
    p95 = source(histogramQuantile={"metric": h, "quantile": 0.95})
    sample = evaluate_source(p95, SideData([a, b]), now=10, window=10)
    assert sample.value == approx(0.75)
    assert sample.requests == approx(200)
    only_502 = source(
        histogramQuantile={"metric": h, "quantile": 0.95, "matchers": {"status_code": "502"}}
    )
    # One bucket without +Inf: NaN -> no data.
    assert evaluate_source(only_502, SideData([a, b]), now=10, window=10).value is None


def test_gauge_aggregates_the_latest_sample_of_each_series() -> None:
    g = "zai_proxy_rate_limit_requests_per_second"
    a, b = PodHistory("a"), PodHistory("b")
    scrape(a, 1, [(g, {"variant": "v2"}, 5.0)])
    scrape(a, 9, [(g, {"variant": "v2"}, 7.0)])
    scrape(b, 9, [(g, {"variant": "v2"}, 3.0), (g, {"variant": "other"}, 100.0)])
    for how, expected in (("sum", 110.0), ("min", 3.0), ("max", 100.0), ("avg", 110 / 3)):
        capacity = source(gauge={"metric": g, "aggregate": how})
        assert evaluate_source(capacity, SideData([a, b]), now=10, window=5).value == approx(
            expected
        )
    v2 = source(gauge={"metric": g, "matchers": {"variant": "v2"}})
    assert evaluate_source(v2, SideData([a, b]), now=10, window=5).value == approx(10.0)
    assert evaluate_source(v2, SideData([]), now=10, window=5).value is None


def test_gauge_staleness() -> None:
    g = "limit"
    capacity = source(gauge={"metric": g})
    old, vanished, failed, ok, departed = (PodHistory(n) for n in "abcde")
    scrape(old, 1, [(g, {}, 1.0)])  # older than the window at now=10, window=5
    scrape(vanished, 8, [(g, {}, 10.0)])
    scrape(vanished, 9, [("other", {}, 1.0)])  # its latest scrape no longer exposes `limit`
    scrape(failed, 8, [(g, {}, 100.0)])
    failed.record_failure(9, "connection refused")  # Prometheus writes staleness markers
    scrape(ok, 9, [(g, {}, 1000.0)])
    scrape(departed, 9, [(g, {}, 10000.0)])  # left the side: its target is gone
    side = SideData([old, vanished, failed, ok], departed=[departed])
    assert evaluate_source(capacity, side, now=10, window=5).value == 1000.0
    # The old sample counts again once the window is long enough.
    assert evaluate_source(capacity, side, now=10, window=20).value == 1001.0


def test_target_labels_are_attached_and_win_over_exposed_ones() -> None:
    pod = PodHistory("p", {"pod": "zai-proxy-v2-abc-12345", "instance": "10.0.0.1:8080"})
    scrape(pod, 1, [("m", {"pod": "exposed", "code": "", "x": "1"}, 1.0)])
    (series,) = pod.by_metric["m"].values()
    assert series.labels == {
        "pod": "zai-proxy-v2-abc-12345",
        "exported_pod": "exposed",
        "instance": "10.0.0.1:8080",
        "x": "1",  # code="" is no label at all
    }
    by_pod = source(gauge={"metric": "m", "matchers": {"pod": "=~zai-proxy-v2-.*"}})
    assert evaluate_source(by_pod, SideData([pod]), now=2, window=5).value == 1.0


def test_duplicate_series_in_one_scrape_keeps_the_first() -> None:
    pod = PodHistory("p")
    scrape(pod, 1, [("m", {"a": "1"}, 1.0), ("m", {"a": "1"}, 2.0)])
    (series,) = pod.by_metric["m"].values()
    assert list(series.points) == [(1, 1.0)]


def test_ring_buffer_is_bounded_by_time_and_size() -> None:
    pod = PodHistory("p")
    for t in range(100):
        scrape(pod, t, [("m", {}, float(t))], retention=10)
    (series,) = pod.by_metric["m"].values()
    assert [p[0] for p in series.points] == list(range(89, 100))  # t >= 99 - 10
    assert series.points.maxlen == ring_size(10, 1.0)
    pod.trim(keep_after=1000)
    assert pod.by_metric == {}


def test_raw_query_and_bad_regex_raise_for_the_provider_to_report() -> None:
    with pytest.raises(UnsupportedSource, match="structured metrics only"):
        evaluate_source(source(query="up"), SideData([]), now=1, window=1)
    bad = source(rate={"metric": REQS, "matchers": {"code": "=~("}})
    with pytest.raises(MatcherError):
        evaluate_source(bad, SideData([]), now=1, window=1)
