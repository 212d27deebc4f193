"""bench/scale.py's sharded mode: its arguments and the pure parts of its figures."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from bench.scale import parse_args
from bench.scale_controllers import analysis_health, read_analysis, spread_evenly


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
