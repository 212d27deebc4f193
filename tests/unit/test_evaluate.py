"""Analysis evaluator: verdicts, `for:` persistence, comparison with stable, capacity gate."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from controller.core.analysis.evaluate import (
    Breach,
    Measurement,
    Sample,
    Verdict,
    check_capacity,
    evaluate,
    judge,
    without_stable_baseline,
    worst,
)
from controller.core.config.model import CapacityGate, Metric

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def metric(**kw: object) -> Metric:
    data: dict[str, object] = {
        "name": "bad-gateway",
        "counterRatio": {"metric": "zai_proxy_requests_total", "numerator": {"status_code": "502"}},
    }
    data.update(kw)
    return Metric.model_validate(data)


def m(canary: Sample, stable: Sample | None = None) -> Measurement:
    return Measurement("bad-gateway", canary, stable)


COMPARE = {"max": 0.05, "compare": {"factor": 1.5, "slack": 0.01}}


@pytest.mark.parametrize(
    ("spec", "canary", "stable", "verdict", "breach", "why"),
    [
        ({"max": 0.05}, Sample(0.01, 100), None, Verdict.PASS, Breach.NONE, "under max"),
        ({"max": 0.05}, Sample(0.20, 100), None, Verdict.FAIL, Breach.CANARY, "over max"),
        # A value without a request count (no proportion) compares plainly: max is inclusive.
        ({"max": 0.05}, Sample(0.05), None, Verdict.PASS, Breach.NONE, "max is inclusive"),
        # A proportion exactly at max is neither above nor below it beyond doubt.
        (
            {"max": 0.05},
            Sample(0.05, 100),
            None,
            Verdict.INCONCLUSIVE,
            Breach.UNKNOWN,
            "a ratio at max holds",
        ),
        ({"min": 0.9}, Sample(0.5, 100), None, Verdict.FAIL, Breach.CANARY, "under min"),
        (
            {"max": 0.05},
            Sample(None),
            None,
            Verdict.INCONCLUSIVE,
            Breach.UNKNOWN,
            "no data is never pass",
        ),
        (
            {"max": 0.05},
            Sample(0.0, 10),
            None,
            Verdict.INCONCLUSIVE,
            Breach.UNKNOWN,
            "too few requests",
        ),
        (
            {"max": 0.25, "minRequests": 5},
            Sample(0.0, 10),
            None,
            Verdict.PASS,
            Breach.NONE,
            "own minRequests",
        ),
        (
            {"max": 0.05},
            Sample(None, error="timeout"),
            None,
            Verdict.ERROR,
            Breach.UNKNOWN,
            "query failed",
        ),
        # Comparison: a breach stable shares holds (upstream incident) and stops the clock ...
        (
            COMPARE,
            Sample(0.20, 100),
            Sample(0.18, 100),
            Verdict.INCONCLUSIVE,
            Breach.SHARED,
            "fleet-wide breach holds",
        ),
        (
            COMPARE,
            Sample(0.06, 5000),
            Sample(0.045, 1000),
            Verdict.INCONCLUSIVE,
            Breach.SHARED,
            "over max but within stable's band (0.045 x 1.5 + 0.01) holds too",
        ),
        # ... a breach only canary has fails.
        (
            COMPARE,
            Sample(0.20, 100),
            Sample(0.01, 100),
            Verdict.FAIL,
            Breach.CANARY,
            "canary-only breach fails",
        ),
        # Issue 18 run 1: one canary pod's ~100-request window read 10.7 % against stable's
        # 5.85 % while both versions were at ~14 %. Above the band (9.8 %) on point values, but
        # the excess is well within the noise of 100 requests: it cannot roll back.
        (
            COMPARE,
            Sample(0.107, 100),
            Sample(0.0585, 300),
            Verdict.INCONCLUSIVE,
            Breach.UNKNOWN,
            "worse than stable only within the noise",
        ),
        # The same ratios over 50x the requests (a busy canary) are worse beyond doubt.
        (
            COMPARE,
            Sample(0.107, 5000),
            Sample(0.0585, 15000),
            Verdict.FAIL,
            Breach.CANARY,
            "the same excess over many requests fails",
        ),
        (
            {"max": 0.05, "compare": {"factor": 1.5}},
            Sample(0.04, 5000),
            Sample(0.0, 100),
            Verdict.PASS,
            Breach.NONE,
            "worse than stable but within max passes",
        ),
        (
            {"max": 0.05, "compare": {"factor": 1.5}},
            Sample(0.20, 100),
            Sample(None),
            Verdict.FAIL,
            Breach.CANARY,
            "no stable data: judged on max alone",
        ),
        (
            {"compare": {"factor": 2.0}},
            Sample(1.0, 100),
            Sample(0.4, 100),
            Verdict.FAIL,
            Breach.CANARY,
            "compare only: more than doubled",
        ),
        (
            {"compare": {"factor": 2.0}},
            Sample(0.7, 100),
            Sample(0.4, 100),
            Verdict.PASS,
            Breach.NONE,
            "compare only: within factor",
        ),
        (
            {"compare": {"factor": 2.0}},
            Sample(0.12, 60),
            Sample(0.05, 400),
            Verdict.INCONCLUSIVE,
            Breach.UNKNOWN,
            "compare only: more than doubled, but only within the noise of 60 requests",
        ),
        (
            {"compare": {"factor": 2.0}},
            Sample(0.7, 100),
            Sample(None),
            Verdict.INCONCLUSIVE,
            Breach.UNKNOWN,
            "compare only without stable data",
        ),
        (
            {"compare": {"factor": 2.0}},
            Sample(0.7, 100),
            Sample(0.4, 3),
            Verdict.INCONCLUSIVE,
            Breach.UNKNOWN,
            "stable with too few requests is no baseline",
        ),
        # Higher is better (a success ratio): the band is stable / factor - slack.
        (
            {"min": 0.95, "compare": {"factor": 1.0, "slack": 0.01}},
            Sample(0.90, 500),
            Sample(0.99, 2000),
            Verdict.FAIL,
            Breach.CANARY,
            "success ratio clearly under stable's fails",
        ),
        (
            {"min": 0.95, "compare": {"factor": 1.0, "slack": 0.01}},
            Sample(0.93, 60),
            Sample(0.97, 200),
            Verdict.INCONCLUSIVE,
            Breach.UNKNOWN,
            "success ratio under stable's only within the noise of 60 requests",
        ),
        (
            {"min": 0.95, "compare": {"factor": 1.0, "slack": 0.01}},
            Sample(0.90, 500),
            Sample(0.905, 2000),
            Verdict.INCONCLUSIVE,
            Breach.SHARED,
            "success ratio as low as stable's is fleet-wide",
        ),
    ],
)
def test_judge_table(
    spec: dict[str, object],
    canary: Sample,
    stable: Sample | None,
    verdict: Verdict,
    breach: Breach,
    why: str,
) -> None:
    got = judge(metric(**spec), m(canary, stable), min_requests=50)
    assert (got.verdict, got.breach) == (verdict, breach), why
    assert got.reason


def test_judge_explains_the_comparison() -> None:
    shared = judge(metric(**COMPARE), m(Sample(0.20, 100), Sample(0.18, 100)), 50)
    assert shared.reason == (
        "0.2 (95% bounds 0.143..0.273 of 100 requests) vs <= 0.05, <= stable*1.5+0.01 "
        "(stable 0.18): stable breaches too (fleet-wide?), holding; breach clock reset"
    )
    band = judge(metric(**COMPARE), m(Sample(0.06, 5000), Sample(0.045, 1000)), 50)
    assert "within stable's band, holding; breach clock reset" in band.reason
    noise = judge(metric(**COMPARE), m(Sample(0.107, 100), Sample(0.0585, 300)), 50)
    assert "worse than stable only within the noise of 100 and 300 requests" in noise.reason
    assert "95% lower bound of the excess -0.0377 <= slack 0.01" in noise.reason


def test_values_that_are_not_proportions_compare_by_value() -> None:
    """Latency quantiles have no binomial noise model: the plain comparison applies."""
    p95 = Metric.model_validate(
        {
            "name": "bad-gateway",
            "histogramQuantile": {
                "metric": "zai_proxy_request_duration_seconds",
                "quantile": 0.95,
            },
            "compare": {"factor": 2.0},
        }
    )
    # Few requests, but 0.9 s > 2 x 0.4 s: worse (no noise allowance for a non-proportion).
    assert judge(p95, m(Sample(0.9, 60), Sample(0.4, 400)), 50).verdict is Verdict.FAIL
    # A counter ratio without request counts (a raw query without sampleQuery) too.
    ratio = metric(compare={"factor": 2.0})
    assert judge(ratio, m(Sample(0.12), Sample(0.05)), 50).verdict is Verdict.FAIL
    # A "ratio" outside [0, 1] is not a proportion either.
    assert judge(ratio, m(Sample(3.0, 60), Sample(1.0, 400)), 50).verdict is Verdict.FAIL


def test_events_per_request_are_no_proportion_and_compare_by_value() -> None:
    """A counterRatio over two counters (upstream 429s per request) has no binomial model."""
    pressure = Metric.model_validate(
        {
            "name": "upstream-429-pressure",
            "counterRatio": {
                "metric": "zai_proxy_upstream_errors_total",
                "numerator": {"error_type": "429"},
                "denominatorMetric": "zai_proxy_requests_total",
            },
            "max": 0.25,
            "compare": {"factor": 2.0, "slack": 0.05},
        }
    )
    # 0.3 against stable's 0.1 on 20 requests: a proportion of 20 trials would be within the
    # noise (inconclusive); events per request compare by value - worse, a breach.
    thin = m(Sample(0.3, 20), Sample(0.1, 400))
    assert judge(pressure, thin, 10).verdict is Verdict.FAIL
    proportion = metric(max=0.25, compare={"factor": 2.0, "slack": 0.05})
    assert judge(proportion, thin, 10).verdict is Verdict.INCONCLUSIVE
    # A fleet-wide surge (stable as high) holds; values above 1 are fine (up to 4 per request).
    held = judge(pressure, m(Sample(1.8, 600), Sample(1.5, 600)), 50)
    assert held.verdict is Verdict.INCONCLUSIVE and "stable breaches too" in held.reason


def test_breach_must_persist_for_the_for_duration() -> None:
    spec = metric(max=0.05, **{"for": "2m"})
    bad = {"bad-gateway": m(Sample(0.3, 100))}
    first = evaluate([spec], bad, 50, T0)
    assert first.verdict is Verdict.INCONCLUSIVE  # pending breach: no promotion, no rollback
    assert first.metrics[0].breach_since == T0
    middle = evaluate([spec], bad, 50, T0 + timedelta(seconds=90), first)
    assert middle.verdict is Verdict.INCONCLUSIVE
    assert "breaching for 90s of 120s" in middle.metrics[0].reason
    last = evaluate([spec], bad, 50, T0 + timedelta(minutes=2), middle)
    assert last.verdict is Verdict.FAIL
    assert last.failing()[0].value == pytest.approx(0.3)


def test_a_good_sample_resets_the_breach_clock() -> None:
    spec = metric(max=0.05, **{"for": "1m"})
    first = evaluate([spec], {"bad-gateway": m(Sample(0.3, 100))}, 50, T0)
    good = evaluate(
        [spec], {"bad-gateway": m(Sample(0.0, 100))}, 50, T0 + timedelta(seconds=30), first
    )
    assert good.verdict is Verdict.PASS and good.breach_since() == {}
    again = evaluate(
        [spec], {"bad-gateway": m(Sample(0.3, 100))}, 50, T0 + timedelta(seconds=70), good
    )
    assert again.verdict is Verdict.INCONCLUSIVE  # the clock restarted at 70s


def test_a_failed_query_keeps_the_breach_clock() -> None:
    spec = metric(max=0.05, **{"for": "1m"})
    bad = {"bad-gateway": m(Sample(0.3, 100))}
    first = evaluate([spec], bad, 50, T0)
    blip = evaluate(
        [spec],
        {"bad-gateway": m(Sample(None, error="timeout"))},
        50,
        T0 + timedelta(seconds=30),
        first,
    )
    assert blip.verdict is Verdict.ERROR and blip.metrics[0].breach_since == T0
    last = evaluate([spec], bad, 50, T0 + timedelta(seconds=60), blip)
    assert last.verdict is Verdict.FAIL  # the breach lasted 60s despite the blip


def test_stable_query_error_is_an_error_not_a_judgement_on_max_alone() -> None:
    got = judge(
        metric(max=0.05, compare={"factor": 1.5}),
        m(Sample(0.2, 100), Sample(None, error="boom")),
        min_requests=50,
    )
    assert got.verdict is Verdict.ERROR and "stable query failed" in got.reason
    assert got.breach is Breach.UNKNOWN


def test_after_the_flip_compare_only_metrics_do_not_count() -> None:
    p95 = metric(name="p95", compare={"factor": 2.0})
    errors = metric(name="errors", max=0.05)
    summary = evaluate(
        [p95, errors],
        {
            "p95": Measurement("p95", Sample(0.5, 100), Sample(None)),
            "errors": Measurement("errors", Sample(0.0, 100)),
        },
        50,
        T0,
    )
    assert summary.verdict is Verdict.INCONCLUSIVE  # no stable baseline for p95
    after = without_stable_baseline(summary, [p95, errors])
    assert after.verdict is Verdict.PASS and len(after.metrics) == 2


def test_overall_is_the_worst_and_unmeasured_is_an_error() -> None:
    a = metric(name="a", max=0.05)
    b = metric(name="b", max=0.05)
    summary = evaluate([a, b], {"a": Measurement("a", Sample(0.0, 100))}, 50, T0)
    assert summary.verdict is Verdict.ERROR
    assert [r.verdict for r in summary.metrics] == [Verdict.PASS, Verdict.ERROR]
    assert worst([]) is Verdict.PASS
    assert worst([Verdict.INCONCLUSIVE, Verdict.FAIL, Verdict.ERROR]) is Verdict.FAIL
    assert evaluate([], {}, 50, T0).verdict is Verdict.PASS


def test_capacity_gate() -> None:
    gate = CapacityGate.model_validate(
        {
            "capacity": {"gauge": {"metric": "x"}},
            "demand": {"rate": {"metric": "y"}},
            "headroom": 1.2,
        }
    )
    # 100 rps total, next weight 50% -> needs 60 rps of canary capacity.
    ok = check_capacity(gate, Sample(60.0), Sample(100.0), 50)
    assert ok.verdict is Verdict.PASS and ok.needed == pytest.approx(60.0)
    cold = check_capacity(gate, Sample(20.0), Sample(100.0), 50)
    assert cold.verdict is Verdict.INCONCLUSIVE
    assert "20 rps < 60 rps" in cold.reason
    assert check_capacity(gate, Sample(None), Sample(100.0), 50).verdict is Verdict.INCONCLUSIVE
    failed = check_capacity(gate, Sample(1.0), Sample(None, error="boom"), 50)
    assert failed.verdict is Verdict.ERROR and "demand query failed" in failed.reason
