"""`ptc backtest`, pure parts: times, the tick grid and its bound, bindings, summary, output."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.core.analysis.evaluate import (
    AnalysisSummary,
    Measurement,
    Sample,
    check_capacity,
    evaluate,
)
from controller.core.analysis.templates import QueryContext
from controller.core.config import load_config_text
from controller.core.config.model import Policy, Rollout, Side
from controller.ops.backtest.model import (
    MAX_TICKS,
    BacktestInputError,
    BacktestResult,
    TickResult,
    make_spec,
    parse_time,
    summarise,
    tick_times,
)
from controller.ops.backtest.render import render_table, to_json
from controller.ops.backtest.selectors import (
    Bindings,
    BoundContext,
    SelectorError,
    SideBinding,
    parse_side,
)

NOW = datetime(2026, 1, 13, 15, 0, tzinfo=UTC)
T0 = datetime(2026, 1, 13, 14, 0, tzinfo=UTC)

CONFIG = """\
rollouts:
  - name: web
    namespace: shop
    service: web
    stable: {deployment: web}
    canary: {deployment: web-v2, version: v2}
    steps:
      - weight: 20
      - weight: 50
        analysis: {interval: 10s}
    analysis:
      interval: 30s
      window: 2m
      minRequests: 10
      maxHold: 2m
      metrics:
        - name: errors
          counterRatio: {metric: http_requests_total, numerator: {code: "500"}}
          max: 0.05
          for: 1m
          compare: {factor: 1.5, slack: 0.01}
        - name: latency
          query: 'max(latency_seconds{ {{ selector }} })'
          max: 1.0
      capacityGate:
        capacity: {gauge: {metric: limit_rps}}
        demand: {rate: {metric: http_requests_total}}
"""


@pytest.fixture
def rollout() -> Rollout:
    return load_config_text(CONFIG).config.rollout("web")


# -- times ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-13T14:00:00Z", T0),
        ("2026-01-13T15:00:00+01:00", T0),
        ("2026-01-13 14:00", T0),  # no offset: UTC
        ("1768312800", T0),
        ("1768312800.5", T0 + timedelta(milliseconds=500)),
        ("now", NOW),
        ("now-1h", T0),
        ("NOW - 30m", NOW - timedelta(minutes=30)),
    ],
)
def test_parse_time_forms(text: str, expected: datetime) -> None:
    parsed = parse_time(text, NOW)
    assert parsed == expected
    assert parsed.tzinfo is not None and parsed.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "text",
    ["", "yesterday", "now+1h", "now-1x", "2026-13-01T00:00:00Z", "-5", "1e9", "99999999999999"],
)
def test_parse_time_rejects_with_the_forms(text: str) -> None:
    with pytest.raises(BacktestInputError) as err:
        parse_time(text, NOW, "--from")
    message = str(err.value)
    assert message.startswith(f"--from {text!r} is not a time")
    assert "RFC 3339" in message and "now-2h" in message


# -- the tick grid -------------------------------------------------------------------------


def test_ticks_run_from_start_to_end_inclusive_at_the_interval(rollout: Rollout) -> None:
    spec = make_spec(rollout, T0, T0 + timedelta(minutes=2))
    assert spec.every == timedelta(seconds=30)  # the analysis interval
    assert spec.ticks() == [T0 + timedelta(seconds=s) for s in (0, 30, 60, 90, 120)]
    # An end between ticks is not a tick itself.
    spec = make_spec(rollout, T0, T0 + timedelta(seconds=119))
    assert spec.ticks()[-1] == T0 + timedelta(seconds=90)


def test_step_override_and_coarser_grid(rollout: Rollout) -> None:
    spec = make_spec(rollout, T0, T0 + timedelta(minutes=1), step=2)
    assert spec.every == timedelta(seconds=10)  # step 2's own interval
    assert len(spec.ticks()) == 7
    coarse = make_spec(rollout, T0, T0 + timedelta(minutes=1), step=2, every=timedelta(minutes=1))
    assert coarse.ticks() == [T0, T0 + timedelta(minutes=1)]


@given(
    intervals=st.integers(min_value=0, max_value=2000),
    every_s=st.integers(min_value=1, max_value=3600),
    rest_ms=st.integers(min_value=0, max_value=3_599_999),
)
def test_tick_grid_properties(intervals: int, every_s: int, rest_ms: int) -> None:
    every = timedelta(seconds=every_s)
    end = (
        T0
        + intervals * every
        + min(timedelta(milliseconds=rest_ms), every - timedelta(milliseconds=1))
    )
    ticks = tick_times(T0, end, every)
    assert len(ticks) == intervals + 1
    assert ticks[0] == T0 and ticks[-1] <= end < ticks[-1] + every
    assert all(b - a == every for a, b in itertools.pairwise(ticks))


def test_too_many_ticks_is_refused_with_a_step_that_fits(rollout: Rollout) -> None:
    end = T0 + timedelta(days=7)
    with pytest.raises(BacktestInputError) as err:
        make_spec(rollout, T0, end)
    message = str(err.value)
    assert "20161 ticks, more than 11000" in message
    assert "--step 55s" in message
    # The suggested step is the finest that fits.
    assert len(make_spec(rollout, T0, end, every=timedelta(seconds=55)).ticks()) <= MAX_TICKS
    with pytest.raises(BacktestInputError):
        make_spec(rollout, T0, end, every=timedelta(seconds=54))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"end": T0}, "--to (2026-01-13T14:00:00Z) must be after --from"),
        ({"end": T0 - timedelta(hours=1)}, "must be after --from"),
        ({"step": 3}, "--at-step 3: rollout 'web' has steps 1..2"),
        ({"step": 0}, "--at-step 0"),
        ({"every": timedelta(milliseconds=500)}, "--step 500ms: must be at least 1s"),
    ],
)
def test_bad_requests_say_what_to_change(
    rollout: Rollout, kwargs: dict[str, object], message: str
) -> None:
    args: dict[str, object] = {"end": T0 + timedelta(hours=1)} | kwargs
    end = args.pop("end")
    assert isinstance(end, datetime)
    with pytest.raises(BacktestInputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make_spec(rollout, T0, end, **args)  # type: ignore[arg-type]


def test_a_rollout_without_metrics_has_nothing_to_replay() -> None:
    bare = load_config_text(
        "rollouts: [{name: w, service: w, stable: {deployment: w}, "
        "canary: {deployment: w2, version: v2}, steps: [{weight: 50}]}]"
    ).config.rollout("w")
    with pytest.raises(BacktestInputError, match="no analysis metrics at step 1"):
        make_spec(bare, T0, T0 + timedelta(hours=1))


def test_capacity_gate_is_judged_for_the_next_weight(rollout: Rollout) -> None:
    assert make_spec(rollout, T0, NOW, step=1).next_weight == 50
    assert make_spec(rollout, T0, NOW, step=2).next_weight == 100  # the flip


# -- bindings ------------------------------------------------------------------------------


def test_parse_side_tells_regexes_from_matchers() -> None:
    assert parse_side("web-v3-.*", "--canary") == SideBinding(
        pod_regex="web-v3-.*", text="web-v3-.*"
    )
    assert parse_side(r"web\.v3-.*", "--canary").pod_regex == r"web\\.v3-.*"  # PromQL-escaped
    matchers = parse_side('{pod=~"web-v3-.*", namespace="shop"}', "--canary")
    assert matchers.selector == 'pod=~"web-v3-.*", namespace="shop"'
    assert matchers.pod_regex is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "--stable: empty"),
        ("pod=web", "not label matchers"),
        ('pod="web', "not label matchers"),
        ("web-(", "not a valid regex"),
    ],
)
def test_parse_side_errors(text: str, message: str) -> None:
    with pytest.raises(SelectorError, match=message):
        parse_side(text, "--stable")


def test_unbound_context_compiles_exactly_as_the_runner(rollout: Rollout) -> None:
    analysis = rollout.analysis
    runner = QueryContext(rollout, analysis.window)
    bound = BoundContext(rollout, analysis.window, Bindings())
    for metric in analysis.metrics:
        for side in (Side.CANARY, Side.STABLE):
            assert bound.compile(metric, side) == runner.compile(metric, side)


def test_bound_sides_reach_every_template_variable(rollout: Rollout) -> None:
    raw = rollout.analysis.metrics[1].model_copy(
        update={"query": 'max(x{pod=~"{{ canary_pod_regex }}|{{ stable_pod_regex }}"})'}
    )
    bindings = Bindings(
        canary=parse_side("web-v3-.*", "--canary"),
        stable=parse_side('app="web",track="stable"', "--stable"),
    )
    ctx = BoundContext(rollout, rollout.analysis.window, bindings)
    errors = rollout.analysis.metrics[0]
    canary = ctx.compile(errors, Side.CANARY).value
    assert 'namespace="shop",pod=~"web-v3-.*",code="500"' in canary
    stable = ctx.compile(errors, Side.STABLE).value
    assert 'http_requests_total{app="web",track="stable",code="500"}' in stable
    assert "pod=~" not in stable  # matchers replace the whole selector
    # Raw templates see the bound regex too; the unbound stable side keeps the derived one.
    assert ctx.compile(raw, Side.CANARY).value.startswith('max(x{pod=~"web-v3-.*|web-')
    service = ctx.variables(Side.SERVICE)
    assert service["pod_regex"].endswith("|web-v3-.*)")
    assert service["selector"] == f'namespace="shop",pod=~"{service["pod_regex"]}"'


# -- the summary ---------------------------------------------------------------------------


def _ticks(rollout: Rollout, values: list[tuple[float | None, float]]) -> list[TickResult]:
    """Run the real evaluator over (canary, stable) error ratios, one tick every 30 s."""
    analysis = rollout.analysis
    gate = analysis.capacity_gate
    assert gate is not None
    previous: AnalysisSummary | None = None
    out = []
    for i, (canary, stable) in enumerate(values):
        at = T0 + timedelta(seconds=30 * i)
        measured = {
            "errors": Measurement("errors", Sample(canary, 100.0), Sample(stable, 200.0)),
            "latency": Measurement("latency", Sample(0.5)),
        }
        previous = evaluate(analysis.metrics, measured, analysis.min_requests, at, previous)
        capacity = check_capacity(gate, Sample(5.0 + i), Sample(10.0), 50)
        out.append(TickResult(at, previous, capacity))
    return out


def test_summary_first_hold_fail_and_rollback_honour_for(rollout: Rollout) -> None:
    spec = make_spec(rollout, T0, T0 + timedelta(minutes=5))
    ticks = _ticks(rollout, [(0.01, 0.01), (0.01, 0.01), (0.2, 0.01), (0.2, 0.01), (0.2, 0.01)])
    summary = summarise(spec, ticks)
    errors = summary.metrics[0]
    assert errors.first_pass == T0
    assert errors.first_hold == T0 + timedelta(seconds=60)  # breach starts: for: 1m runs
    assert errors.first_fail == T0 + timedelta(seconds=120)
    assert errors.breach_since == T0 + timedelta(seconds=60)
    assert errors.counts == {"pass": 2, "inconclusive": 2, "error": 0, "fail": 1}
    assert "breaching for 0s of 60s" in errors.hold_reason
    assert summary.rollback is not None
    assert summary.rollback.at == T0 + timedelta(seconds=120)
    assert summary.rollback.reason.startswith(
        "analysis failed: errors: 0.2 (95% bounds 0.143..0.273 of 100 requests) vs <= 0.05"
    )
    assert summary.metrics[1].first_fail is None
    # Capacity 5, 6, 7 ... vs 10 x 50% x 1.2 = 6 needed: closed at first, open from the 2nd.
    assert summary.capacity_first_hold == T0
    assert summary.capacity_first_pass == T0 + timedelta(seconds=30)


def test_summary_fleet_wide_breach_holds_into_max_hold(rollout: Rollout) -> None:
    spec = make_spec(rollout, T0, T0 + timedelta(minutes=5))
    ticks = _ticks(rollout, [(0.01, 0.01)] + [(0.2, 0.2)] * 6)
    summary = summarise(spec, ticks)
    assert summary.rollback is None
    assert summary.metrics[0].first_fail is None
    assert summary.metrics[0].first_hold == T0 + timedelta(seconds=30)
    assert "stable breaches too" in summary.metrics[0].hold_reason
    # Held from 30 s on; maxHold 2m is reached at 150 s, and onInconclusive is pause.
    assert summary.max_hold is not None
    assert (summary.max_hold.at, summary.max_hold.action) == (
        T0 + timedelta(seconds=150),
        "pause",
    )
    assert summary.first_action == summary.max_hold


def test_max_hold_policy_hold_never_acts_and_rollback_does(rollout: Rollout) -> None:
    ticks = _ticks(rollout, [(0.2, 0.2)] * 8)
    for policy, action in (("hold", None), ("rollback", "rollback"), ("pause", "pause")):
        changed = rollout.model_copy(
            update={
                "analysis": rollout.analysis.model_copy(update={"on_inconclusive": Policy(policy)})
            }
        )
        spec = make_spec(changed, T0, T0 + timedelta(minutes=5))
        found = summarise(spec, ticks).max_hold
        assert (found.action if found else None) == action, policy


def test_a_pass_ends_the_hold(rollout: Rollout) -> None:
    spec = make_spec(rollout, T0, T0 + timedelta(minutes=5))
    held = [(0.2, 0.2)] * 4 + [(0.01, 0.01)] + [(0.2, 0.2)] * 4
    assert summarise(spec, _ticks(rollout, held)).max_hold is None


# -- output --------------------------------------------------------------------------------


def _result(rollout: Rollout) -> BacktestResult:
    spec = make_spec(rollout, T0, T0 + timedelta(minutes=2))
    ticks = _ticks(rollout, [(0.01, 0.01), (0.2, 0.01), (0.2, 0.01), (0.2, 0.01), (None, 0.01)])
    return BacktestResult(
        spec, "http://prom:9090", ("q1", "q2"), tuple(ticks), summarise(spec, ticks), (), 0.1, 0.2
    )


def test_table_has_a_row_per_tick_and_the_answer(rollout: Rollout) -> None:
    text = render_table(_result(rollout))
    lines = text.splitlines()
    rows = [line for line in lines if line.startswith("14:0")]
    assert len(rows) == 5
    assert rows[0].split()[:4] == ["14:00:00", "pass", "pass", "0.01"]
    assert "inconclusive 0.2 (s 0.01) breach 0s" in rows[1]
    assert rows[3].split()[:3] == ["14:01:30", "fail", "fail"] and "breach 1m " in rows[3]
    assert "inconclusive - (s 0.01) breach 1m30s" in rows[4]  # no data keeps the breach clock
    summary_row = next(line for line in lines if line.startswith("errors "))
    assert summary_row.split() == ["errors", "14:00:00", "14:00:30", "14:01:30", "1/3/0/1"]
    assert "rollback: would have rolled back at 2026-01-13 14:01:30 UTC" in text
    assert "period 2026-01-13 14:00:00 -> 2026-01-13 14:02:00 UTC, every 30s: 5 ticks" in text


def test_json_has_every_tick_and_the_summary(rollout: Rollout) -> None:
    data = json.loads(json.dumps(to_json(_result(rollout))))
    assert [t["verdict"] for t in data["ticks"]] == [
        "pass",
        "inconclusive",
        "inconclusive",
        "fail",
        "inconclusive",
    ]
    assert data["ticks"][3]["metrics"][0]["breachSince"] == "2026-01-13T14:00:30Z"
    assert data["ticks"][0]["capacity"]["needed"] == pytest.approx(6.0)
    assert data["summary"]["rollback"]["at"] == "2026-01-13T14:01:30Z"
    assert data["summary"]["metrics"][0]["firstFail"] == "2026-01-13T14:01:30Z"
    assert (data["step"], data["nextWeight"], data["every"]) == (1, 50, "30s")
