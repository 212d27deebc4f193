"""The breach clock (`for:`) across readings of every kind: the rule in evaluate.py's docstring.

A reading is ``none`` (within thresholds), ``canary`` (a breach stable does not explain),
``shared`` (a breach within stable's band: the fleet is breaching too) or ``unknown`` (no data,
too few requests, a failed query, or an excess within the noise). ``none`` and ``shared`` stop
the clock, ``canary`` starts it, ``unknown`` keeps it as it is.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import example, given, settings
from hypothesis import strategies as st

from controller.core.analysis.evaluate import (
    AnalysisSummary,
    Breach,
    Measurement,
    Sample,
    Verdict,
    evaluate,
)
from controller.core.config.model import Metric

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
NAME = "bad-gateway-ratio"


def bad_gateway(for_: str) -> Metric:
    """The zai-proxy pack's 502 metric."""
    return Metric.model_validate(
        {
            "name": NAME,
            "counterRatio": {
                "metric": "zai_proxy_requests_total",
                "numerator": {"status_code": "502"},
            },
            "max": 0.05,
            "for": for_,
            "compare": {"factor": 1.5, "slack": 0.01},
        }
    )


# One measurement per kind of reading (and per way of being unknown).
READINGS: dict[str, tuple[Breach, Measurement]] = {
    "pass": (Breach.NONE, Measurement(NAME, Sample(0.01, 1000), Sample(0.01, 1000))),
    "canary-only": (Breach.CANARY, Measurement(NAME, Sample(0.30, 1000), Sample(0.01, 1000))),
    "fleet-wide": (Breach.SHARED, Measurement(NAME, Sample(0.20, 1000), Sample(0.18, 1000))),
    "within-band": (Breach.SHARED, Measurement(NAME, Sample(0.06, 5000), Sample(0.045, 1000))),
    "noise": (Breach.UNKNOWN, Measurement(NAME, Sample(0.107, 100), Sample(0.0585, 300))),
    "thin": (Breach.UNKNOWN, Measurement(NAME, Sample(0.30, 10), Sample(0.01, 1000))),
    "no-data": (Breach.UNKNOWN, Measurement(NAME, Sample(None), Sample(0.01, 1000))),
    "error": (Breach.UNKNOWN, Measurement(NAME, Sample(None, error="timeout"))),
    "stable-error": (
        Breach.UNKNOWN,
        Measurement(NAME, Sample(0.30, 1000), Sample(None, error="timeout")),
    ),
}


def run(metric: Metric, readings: list[tuple[float, str]]) -> list[AnalysisSummary]:
    """Evaluate (seconds after T0, reading kind) in order, carrying `for:` state."""
    out: list[AnalysisSummary] = []
    previous = None
    for seconds, kind in readings:
        previous = evaluate(
            [metric], {NAME: READINGS[kind][1]}, 50, T0 + timedelta(seconds=seconds), previous
        )
        out.append(previous)
    return out


def verdicts(summaries: list[AnalysisSummary]) -> list[Verdict]:
    return [s.verdict for s in summaries]


# -- examples -----------------------------------------------------------------------------------


def test_a_fleet_wide_reading_restarts_the_clock() -> None:
    got = run(
        bad_gateway("1m"),
        [(0, "canary-only"), (30, "fleet-wide"), (60, "canary-only"), (90, "canary-only")],
    )
    assert verdicts(got) == [Verdict.INCONCLUSIVE] * 4
    assert [s.metrics[0].breach_since for s in got] == [
        T0,
        None,
        T0 + timedelta(seconds=60),
        T0 + timedelta(seconds=60),
    ]
    assert "breaching for 30s of 60s" in got[-1].metrics[0].reason
    # A full `for:` of canary-only breaches after the incident does fail.
    later = run(bad_gateway("1m"), [(0, "fleet-wide"), (30, "canary-only"), (90, "canary-only")])
    assert verdicts(later)[-1] is Verdict.FAIL


def test_issue_18_run_2_one_noisy_reading_after_an_incident_does_not_fail() -> None:
    """Held through a fleet-wide incident well past `for:`; the first canary breach after it
    (one noisy window as the faults clear) starts a new `for:` instead of failing at once."""
    metric = bad_gateway("1m")
    readings = [(0.0, "canary-only")] + [(30.0 * i, "fleet-wide") for i in range(1, 20)]
    readings.append((600, "canary-only"))
    got = run(metric, readings)
    assert Verdict.FAIL not in verdicts(got)
    assert got[-1].metrics[0].breach_since == T0 + timedelta(seconds=600)
    assert "breaching for 0s of 60s" in got[-1].metrics[0].reason


def test_unknown_readings_keep_the_clock_running() -> None:
    for kind in ("noise", "thin", "no-data", "error", "stable-error"):
        got = run(bad_gateway("1m"), [(0, "canary-only"), (30, kind), (60, "canary-only")])
        assert got[1].metrics[0].breach_since == T0, kind
        assert verdicts(got)[-1] is Verdict.FAIL, kind
        # ... but never start it.
        alone = run(bad_gateway("1m"), [(0, kind), (30, kind)])
        assert alone[-1].metrics[0].breach_since is None, kind


def test_an_unmeasured_metric_keeps_the_clock() -> None:
    metric = bad_gateway("1m")
    first = evaluate([metric], {NAME: READINGS["canary-only"][1]}, 50, T0)
    missing = evaluate([metric], {}, 50, T0 + timedelta(seconds=30), first)
    assert missing.verdict is Verdict.ERROR and missing.metrics[0].breach_since == T0
    last = evaluate(
        [metric], {NAME: READINGS["canary-only"][1]}, 50, T0 + timedelta(seconds=60), missing
    )
    assert last.verdict is Verdict.FAIL


# -- properties ---------------------------------------------------------------------------------

KINDS = sorted(READINGS)
sequences = st.lists(
    st.tuples(st.integers(min_value=1, max_value=90), st.sampled_from(KINDS)),
    min_size=1,
    max_size=40,
)
for_seconds = st.sampled_from([0, 1, 30, 60, 120, 300])


def timed(steps: list[tuple[int, str]]) -> list[tuple[float, str]]:
    """Gaps -> absolute seconds after T0."""
    now, out = 0.0, []
    for gap, kind in steps:
        now += gap
        out.append((now, kind))
    return out


@settings(max_examples=300, deadline=None)
@given(steps=sequences, for_s=for_seconds)
@example(steps=[(1, "canary-only"), (1, "noise"), (1, "fleet-wide"), (1, "canary-only")], for_s=1)
def test_fails_exactly_after_for_of_canary_breaches_since_the_last_reset(
    steps: list[tuple[int, str]], for_s: int
) -> None:
    """The rule as a specification: a reading fails iff it is a canary-only breach and the
    clock - started by the first canary-only breach after the last pass or fleet-wide reading -
    has run for at least `for:`."""
    readings = timed(steps)
    got = run(bad_gateway(f"{for_s}s"), readings)
    clock: float | None = None
    for (at, kind), summary in zip(readings, got, strict=True):
        breach = READINGS[kind][0]
        if breach in (Breach.NONE, Breach.SHARED):
            clock = None
        elif breach is Breach.CANARY and clock is None:
            clock = at
        result = summary.metrics[0]
        expected = clock if clock is None else T0 + timedelta(seconds=clock)
        assert result.breach_since == expected
        fails = breach is Breach.CANARY and clock is not None and at - clock >= for_s
        assert (result.verdict is Verdict.FAIL) == fails, (at, kind, result.reason)


@settings(max_examples=300, deadline=None)
@given(steps=sequences, for_s=for_seconds)
@example(steps=[(1, "canary-only"), (1, "fleet-wide"), (1, "canary-only")], for_s=1)
def test_after_a_fleet_wide_reading_only_a_full_for_of_canary_breaches_fails(
    steps: list[tuple[int, str]], for_s: int
) -> None:
    """A sequence containing a fleet-wide reading never fails unless `for:` of canary-only
    breaches (unknown readings allowed in between) follows it."""
    readings = timed(steps)
    got = run(bad_gateway(f"{for_s}s"), readings)
    for i, summary in enumerate(got):
        if summary.verdict is not Verdict.FAIL:
            continue
        shared = [j for j in range(i) if READINGS[readings[j][1]][0] is Breach.SHARED]
        if not shared:
            continue
        since_incident = readings[shared[-1] + 1 : i + 1]
        canary = [t for t, k in since_incident if READINGS[k][0] is Breach.CANARY]
        assert canary and readings[i][0] - canary[0] >= for_s


UNKNOWN_KINDS = [k for k in KINDS if READINGS[k][0] is Breach.UNKNOWN]


@settings(max_examples=300, deadline=None)
@given(
    before=sequences,
    incident=st.lists(
        st.tuples(
            st.integers(min_value=1, max_value=90),
            st.sampled_from(["fleet-wide", "within-band", *UNKNOWN_KINDS]),
        ),
        min_size=1,
        max_size=20,
    ),
    for_s=st.sampled_from([1, 30, 60, 120, 300]),
    gap=st.integers(min_value=1, max_value=600),
)
@example(before=[(1, "canary-only")], incident=[(600, "fleet-wide")], for_s=60, gap=1)
def test_one_noisy_reading_after_an_incident_never_fails(
    before: list[tuple[int, str]],
    incident: list[tuple[int, str]],
    for_s: int,
    gap: int,
) -> None:
    """Issue 18 run 2 in general: whatever came before (a canary-only breach whose `for:` has
    long passed included), an incident of fleet-wide readings (unknowns among them), then one
    canary-only reading - however late - never fails: its clock starts at that reading."""
    steps = [*before, *incident, (1, "fleet-wide"), (gap, "canary-only")]
    got = run(bad_gateway(f"{for_s}s"), timed(steps))
    assert got[-1].verdict is Verdict.INCONCLUSIVE
    assert got[-1].metrics[0].breach_since == T0 + timedelta(seconds=sum(g for g, _ in steps))
