"""bench/scale.py: its arguments, its query plan, and the pure parts of its figures and targets."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from bench.fleet import fleet_names
from bench.scale import parse_args
from bench.scale_controllers import analysis_health, fleet_config, read_analysis, spread_evenly
from bench.scale_report import QueryPlan, fleet_plan, query_plan, targets


def test_default_arguments_are_one_controller_over_the_usual_sizes() -> None:
    args = parse_args([])
    assert (args.shards, args.sizes, args.measure, args.ramp) == (0, [10, 100, 500], 60.0, None)
    assert parse_args(["--quick"]).sizes == [10, 50]


def test_quick_keeps_the_sizes_asked_for_with_shards() -> None:
    args = parse_args(["--sizes", "100", "--shards", "2", "--quick"])
    assert (args.sizes, args.shards, args.measure) == ([100], 2, 30.0)
    assert parse_args(["--run-args", "--lease-duration 30s"]).run_args == "--lease-duration 30s"


def test_negative_shards_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--shards", "-1"])
    assert exit_info.value.code == 2
    assert "--shards" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("holders", "spread"),
    [
        (["a", "b", "c", "d"], True),
        (["a", "a", "b", "b", "c", "d"], True),
        (["a", "a", "b", "c"], False),  # d leads nothing while a leads two
        (["a", "b", "c", None], False),  # a shard without a holder
        (["a", "b", "c", "stranger"], False),  # held by a process not in this run
    ],
)
def test_shards_count_as_led_when_all_are_held_by_ours_evenly(
    holders: list[str | None], spread: bool
) -> None:
    assert spread_evenly(holders, ["a", "b", "c", "d"]) is spread


def _log(path: Path, lines: list[object]) -> Path:
    """Append `lines` (dicts as JSON lines, strings as they are) to the log at `path`."""
    with path.open("a") as out:
        out.write("".join(x if isinstance(x, str) else json.dumps(x) + "\n" for x in lines))
    return path


def test_analysis_sums_evaluations_and_pools_latency_across_replicas(tmp_path: Path) -> None:
    def evaluated(duration: float, *verdicts: str) -> dict[str, object]:
        return {
            "event": "analysis evaluated",
            "duration_s": duration,
            "metrics": [{"verdict": v} for v in verdicts],
        }

    before = _log(tmp_path / "r0.log", [evaluated(99.0, "error")])  # before the window
    offset = before.stat().st_size
    _log(
        before,
        [
            evaluated(1.0, "pass", "error"),
            'not json but mentions "analysis evaluated"\n',
            {"event": "reconciled"},
            evaluated(3.0, "pass"),
        ],
    )
    r1 = _log(tmp_path / "r1.log", [evaluated(2.5, "error", "error"), evaluated(2.5, "pass")])
    parts = [read_analysis(before, offset), read_analysis(r1, 0)]
    assert [(p.evaluations, p.errors) for p in parts] == [(2, 1), (2, 2)]
    health = analysis_health(parts)
    assert health["evaluations"] == 4 and health["metric_errors"] == 3
    # pooled: the median of 1, 2.5, 2.5, 3 (the median of per-log medians 2 and 2.5 is 2.25)
    assert health["eval_median_s"] == 2.5
    assert math.isnan(analysis_health([read_analysis(r1, r1.stat().st_size)])["eval_median_s"])


def test_the_fleet_shares_four_queries_per_tick_where_each_rollout_had_seven(
    tmp_path: Path,
) -> None:
    # 502s, 429s, requests (one denominator for both ratios and both sides), limiter gauge;
    # unshared: 502 value + count, 429 value + count per side, gauge
    plan = fleet_plan(tmp_path)
    assert plan == QueryPlan(shared=4, unshared_per_rollout=0, compiled_per_rollout=7)
    assert plan.per_tick(10) == plan.per_tick(2000) == 4
    assert plan.per_tick(2000, replicas=4) == 16  # each replica asks for its own shards


def test_a_raw_query_metric_is_planned_per_rollout(tmp_path: Path) -> None:
    members = [fleet_names(i, "fleet") for i in range(3)]
    path = fleet_config(tmp_path / "c.json", "http://127.0.0.1:9090", members)
    body = json.loads(path.read_text())
    raw = {"name": "raw", "query": 'sum(up{namespace="{{ namespace }}"})', "min": 1}
    body["defaults"]["analysis"]["metrics"].append(raw)
    path.write_text(json.dumps(body))
    plan = query_plan(path)
    assert (plan.shared, plan.unshared_per_rollout, plan.compiled_per_rollout) == (4, 1, 8)
    assert plan.per_tick(100) == 104


def _row(n: int, q: float, evals: float = 1.0, errors: int = 0) -> dict[str, object]:
    return {
        "n": n,
        "reached": n,
        "cores": 0.1,
        "hwm_mb": 130.0,
        "q_per_interval": q,
        "evals_per_interval": evals,
        "metric_errors": errors,
    }


PLAN = QueryPlan(shared=4, unshared_per_rollout=0, compiled_per_rollout=7)


def test_targets_are_met_by_a_fleet_that_keeps_up_on_four_queries() -> None:
    found = targets([_row(100, 4.0), _row(500, 4.0, evals=0.999)], PLAN)
    assert [met for _, _, met in found] == [True] * 6
    assert found[-1][1] == "exponent 0.00"


@pytest.mark.parametrize(
    ("rows", "missed"),
    [
        # 4 -> 7 queries per interval: exponent 0.35, sub-linear but not < 0.3, and over plan
        ([_row(100, 4.0), _row(500, 7.0)], {"queries/interval as planned", "exponent"}),
        # flat because evaluations fell behind: a ceiling, not sharing
        ([_row(100, 4.0), _row(500, 4.0, evals=0.5)], {"1.0 evaluations", "exponent"}),
        ([_row(100, 4.0, errors=3), _row(500, 4.0)], {"exponent"}),
    ],
)
def test_targets_missed(rows: list[dict[str, object]], missed: set[str]) -> None:
    found = targets(rows, PLAN)
    failed = {name for name, _, met in found if not met}
    assert {key for key in missed if any(key in name for name in failed)} == missed
    assert len(failed) == len(missed)


def test_a_sharded_run_plans_the_shared_queries_once_per_replica() -> None:
    row = _row(1000, 15.8) | {"replicas": [{"cores": 0.2, "hwm_mb": 150.0}] * 4}
    found = {name: (measured, met) for name, measured, met in targets([row], PLAN)}
    assert found["queries/interval as planned (shared per template and namespace)"] == (
        "15.8 at 1000 (plan 16)",
        True,
    )
    assert "N=1000: < 0.25 core per replica (max)" in found
