"""Confidence-aware verdicts for absolute thresholds on proportions (issue 16 part B).

A counterRatio of requests fails `max` only when its Wilson lower bound is above it, passes only
when its upper bound is at most it, and otherwise holds (inconclusive); `min` mirrored.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from controller.core.analysis.evaluate import Breach, Measurement, Sample, Verdict, evaluate, judge
from controller.core.config.model import Analysis, Metric

T0 = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def ratio(**kw: object) -> Metric:
    data: dict[str, object] = {
        "name": "bad-gateway",
        "counterRatio": {"metric": "zai_proxy_requests_total", "numerator": {"status_code": "502"}},
    }
    data.update(kw)
    return Metric.model_validate(data)


def of(failures: int, requests: int) -> Measurement:
    return Measurement("bad-gateway", Sample(failures / requests, requests))


MAX5 = ratio(max=0.05)


@pytest.mark.parametrize(
    ("failures", "requests", "verdict", "breach", "bounds"),
    [
        # The pair: both 7.5 %, only the second is evidence of more than 5 %.
        (3, 40, Verdict.INCONCLUSIVE, Breach.UNKNOWN, "95% bounds 0.0304..0.173 of 40 requests"),
        (300, 4000, Verdict.FAIL, Breach.CANARY, "95% bounds 0.0684..0.0821 of 4000 requests"),
        # 0 of 40 is not "certainly under 5 %" (up to 6.3 %); 0 of 400 is.
        (0, 40, Verdict.INCONCLUSIVE, Breach.UNKNOWN, "95% bounds 0..0.0634 of 40 requests"),
        (0, 400, Verdict.PASS, Breach.NONE, "95% bounds 0..0.00672 of 400 requests"),
    ],
)
def test_the_same_ratio_over_more_requests_is_more_evidence(
    failures: int, requests: int, verdict: Verdict, breach: Breach, bounds: str
) -> None:
    got = judge(MAX5, of(failures, requests), min_requests=0)
    assert (got.verdict, got.breach) == (verdict, breach)
    assert bounds in got.reason
    if verdict is Verdict.INCONCLUSIVE:
        assert got.reason.endswith("too few requests to tell at 95% confidence, holding")


def test_min_is_mirrored() -> None:
    success = ratio(min=0.95)
    verdict = lambda ok, n: judge(success, of(ok, n), 0).verdict  # noqa: E731
    assert verdict(37, 40) is Verdict.INCONCLUSIVE  # 92.5 % of 40: could be 95 %
    assert verdict(3700, 4000) is Verdict.FAIL  # 92.5 % of 4000: under 95 % beyond doubt
    assert verdict(40, 40) is Verdict.INCONCLUSIVE  # 100 % of 40: lower bound 93.7 %
    assert verdict(4000, 4000) is Verdict.PASS


def test_confidence_is_configurable() -> None:
    # 6.5 % of 1000 against max 5 %: lower bound 5.33 % at 95 %, 4.91 % at 99 %.
    assert judge(MAX5, of(65, 1000), 0, 0.95).verdict is Verdict.FAIL
    held = judge(MAX5, of(65, 1000), 0, 0.99)
    assert held.verdict is Verdict.INCONCLUSIVE
    assert "99% bounds 0.0491..0.0856 of 1000 requests" in held.reason
    # evaluate() hands the confidence to every metric.
    summary = evaluate([MAX5], {"bad-gateway": of(65, 1000)}, 0, T0, confidence=0.99)
    assert summary.verdict is Verdict.INCONCLUSIVE


def test_comparison_with_stable_uses_the_same_confidence() -> None:
    compare = ratio(max=0.05, compare={"factor": 1.5, "slack": 0.01})
    worse = Measurement("bad-gateway", Sample(0.15, 400), Sample(0.06, 400))
    assert judge(compare, worse, 50, 0.95).verdict is Verdict.FAIL
    held = judge(compare, worse, 50, 0.999)
    assert (held.verdict, held.breach) == (Verdict.INCONCLUSIVE, Breach.UNKNOWN)
    assert "99.9% lower bound of the excess" in held.reason


def test_a_canary_that_may_breach_holds_whatever_stable_does() -> None:
    compare = ratio(max=0.05, compare={"factor": 1.5, "slack": 0.01})
    got = judge(compare, Measurement("bad-gateway", Sample(0.04, 100), Sample(0.04, 100)), 50)
    assert (got.verdict, got.breach) == (Verdict.INCONCLUSIVE, Breach.UNKNOWN)
    assert "(stable 0.04)" in got.reason


def test_no_requests_never_pass_even_without_a_minimum() -> None:
    got = judge(MAX5, Measurement("bad-gateway", Sample(0.0, 0)), min_requests=0)
    assert got.verdict is Verdict.INCONCLUSIVE and "no requests in the window" in got.reason


def test_thresholds_at_the_edge_compare_plainly() -> None:
    """`max: 0` (not one error) cannot be cleared by any interval: the count decides."""
    zero = ratio(max=0)
    assert judge(zero, of(0, 60), 50).verdict is Verdict.PASS
    assert judge(zero, of(1, 60), 50).verdict is Verdict.FAIL
    assert judge(ratio(min=1), of(59, 60), 50).verdict is Verdict.FAIL


def test_events_per_request_keep_the_plain_threshold() -> None:
    pressure = ratio(
        max=0.25,
        counterRatio={
            "metric": "zai_proxy_upstream_errors_total",
            "numerator": {"error_type": "429"},
            "denominatorMetric": "zai_proxy_requests_total",
        },
    )
    got = judge(pressure, Measurement("bad-gateway", Sample(0.3, 20)), 10)
    assert got.verdict is Verdict.FAIL and "bounds" not in got.reason


@pytest.mark.parametrize("bad", [0.5, 1.0, 0.2, 1.5, "0.95"])
def test_confidence_is_validated(bad: object) -> None:
    with pytest.raises(ValidationError):
        Analysis.model_validate({"confidence": bad})


def test_confidence_defaults_to_95_percent() -> None:
    assert Analysis().confidence == 0.95
    assert Analysis.model_validate({"confidence": 0.999}).confidence == 0.999


# -- properties ---------------------------------------------------------------------------------

confidences = st.floats(min_value=0.51, max_value=0.999)
thresholds = st.floats(min_value=0.001, max_value=0.999)


def verdict_of(metric: Metric, x: int, n: int, confidence: float) -> Verdict:
    return judge(metric, Measurement("bad-gateway", Sample(x / n, n)), 0, confidence).verdict


@given(
    n=st.integers(1, 100_000),
    data=st.data(),
    maximum=thresholds,
    confidence=confidences,
)
def test_more_failures_never_improve_the_verdict(
    n: int, data: st.DataObject, maximum: float, confidence: float
) -> None:
    x = data.draw(st.integers(0, n - 1))
    metric = ratio(max=maximum)
    assert verdict_of(metric, x + 1, n, confidence).rank >= (
        verdict_of(metric, x, n, confidence).rank
    )
    # One more successful request (same failures, one more request) never worsens it.
    assert verdict_of(metric, x, n + 1, confidence).rank <= (
        verdict_of(metric, x, n, confidence).rank
    )


@given(n=st.integers(1, 100_000), data=st.data(), minimum=thresholds, confidence=confidences)
def test_more_successes_never_worsen_a_min_verdict(
    n: int, data: st.DataObject, minimum: float, confidence: float
) -> None:
    ok = data.draw(st.integers(0, n - 1))
    metric = ratio(min=minimum)
    assert verdict_of(metric, ok + 1, n, confidence).rank <= (
        verdict_of(metric, ok, n, confidence).rank
    )


@given(
    value=st.floats(0.0, 1.0),
    maximum=st.one_of(st.none(), st.floats(0.0, 1.0)),
    minimum=st.one_of(st.none(), st.floats(0.0, 1.0)),
    confidence=confidences,
)
def test_never_pass_with_zero_requests(
    value: float, maximum: float | None, minimum: float | None, confidence: float
) -> None:
    metric = ratio(max=maximum, min=minimum) if (maximum, minimum) != (None, None) else MAX5
    got = judge(metric, Measurement("bad-gateway", Sample(value, 0)), 0, confidence)
    assert got.verdict is not Verdict.PASS


@given(p=st.floats(0.0, 1.0), maximum=thresholds, confidence=confidences, n=st.integers(10, 10**9))
def test_agrees_with_the_plain_threshold_as_counts_grow(
    p: float, maximum: float, confidence: float, n: int
) -> None:
    """Decisive verdicts always agree with the plain one and stay as n grows; past a
    count that depends on the gap to the threshold, every verdict is decisive."""
    metric = ratio(max=maximum)
    plain = Verdict.FAIL if p > maximum else Verdict.PASS
    got = verdict_of_p(metric, p, n, confidence)
    if got is not Verdict.INCONCLUSIVE:
        assert got is plain
        assert verdict_of_p(metric, p, 4 * n, confidence) is plain
    gap = abs(p - maximum)
    # z <= 3.1 at 99.9 %: the bounds are within z/sqrt(n) (+ z^2/n) of p.
    if gap >= 0.001 and n >= (4 / gap) ** 2:
        assert got is plain


def verdict_of_p(metric: Metric, p: float, n: int, confidence: float) -> Verdict:
    return judge(metric, Measurement("bad-gateway", Sample(p, n)), 0, confidence).verdict
