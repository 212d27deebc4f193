"""The `ptc` command line: validate, plan, schema; exit codes and messages."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from controller.core.config.schema import schema_json
from controller.ops.cli import main

REPO = Path(__file__).resolve().parents[2]
ZAI = str(REPO / "config" / "zai-proxy.yaml")
MINIMAL = str(REPO / "config" / "minimal.yaml")

PLANS = """\
rollouts:
  - name: quarter
    service: quarter
    stable: {deployment: quarter}
    canary: {deployment: quarter-v2, version: v2}
    replicas: 4
    maxSurge: 1
    steps: [{weight: 25, hold: 1m}]
  - name: odd
    service: odd
    stable: {deployment: odd}
    canary: {deployment: odd-v2, version: v2}
    maxSurge: 1
    steps: [{weight: 41, hold: 2m}]
  - name: tight
    service: tight
    stable: {deployment: tight}
    canary: {deployment: tight-v2, version: v2}
    maxSurge: 0
    maxUnavailable: 1
    steps: [{weight: 50, hold: 30s}]
"""

INVALID = """\
rollouts:
  - name: web
    service: web
    stable: {deployment: web}
    canary: {deployment: web-v2, version: v2}
    steps:
      - weight: 50
      - weight: 40
        hold: soon
"""


@pytest.fixture
def plans(tmp_path: Path) -> str:
    path = tmp_path / "plans.yaml"
    path.write_text(PLANS)
    return str(path)


@pytest.fixture
def invalid(tmp_path: Path) -> str:
    path = tmp_path / "invalid.yaml"
    path.write_text(textwrap.dedent(INVALID))
    return str(path)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def plan_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    code, out, err = run(capsys, "plan", *argv, "--output", "json")
    assert (code, err) == (0, "")
    data = json.loads(out)
    assert isinstance(data, dict)
    return data


def row(data: dict[str, Any], index: int = 0) -> tuple[Any, ...]:
    s = data["steps"][index]
    return s["canary"], s["stable"], s["achievedWeight"], s["peakPods"]


# ---------------------------------------------------------------------------------------------
# validate


def test_validate_ok(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "validate", ZAI, MINIMAL) == (
        0,
        f"{ZAI}: ok (1 rollout, 0 warning(s))\n{MINIMAL}: ok (1 rollout, 0 warning(s))\n",
        "",
    )


def test_validate_invalid_prints_every_problem_on_stderr(
    capsys: pytest.CaptureFixture[str], invalid: str
) -> None:
    code, out, err = run(capsys, "validate", invalid, MINIMAL)
    assert code == 2
    assert out == f"{MINIMAL}: ok (1 rollout, 0 warning(s))\n"
    assert err.splitlines() == [
        f"{invalid}:8: rollout 'web': steps[1].weight: weights must increase strictly: 40 "
        "follows 50",
        f"{invalid}:9: rollout 'web': steps[1].hold: expected a duration string such as 30s, "
        "5m, 1h30m or 24h, got 'soon'",
        f"{invalid}: invalid (2 error(s))",
    ]


def test_validate_missing_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    assert run(capsys, "validate", str(missing)) == (
        2,
        "",
        f"{missing}: cannot read file: No such file or directory\n"
        f"{missing}: invalid (1 error(s))\n",
    )


def test_validate_warnings_go_to_stderr_and_pass(
    capsys: pytest.CaptureFixture[str], plans: str
) -> None:
    code, out, err = run(capsys, "validate", plans, "--replicas", "3")
    assert code == 0
    assert out == f"{plans}: ok (3 rollouts, 2 warning(s))\n"
    assert err.splitlines() == [
        f"{plans}:15: rollout 'tight': flip: warning: with 3 replica(s): no stable pod stays "
        "warm through the bake",
        f"{plans}:21: rollout 'tight': steps[0].weight: warning: with 3 replica(s): weight 50% "
        "is approximated by 66.7% (tolerance 10 points)",
    ]


def test_validate_replicas_finds_infeasible_plans(
    capsys: pytest.CaptureFixture[str], plans: str
) -> None:
    code, out, err = run(capsys, "validate", plans, "--replicas", "1")
    assert (code, out) == (2, "")
    assert err.splitlines()[-1] == f"{plans}: invalid (2 error(s))"
    assert (
        f"{plans}:21: rollout 'tight': steps[0].weight: with 1 replica(s): infeasible: no split "
        "of 1 pod(s) + 0 surge has both versions; raise maxSurge"
    ) in err.splitlines()


@pytest.mark.parametrize("command", ["validate", "plan"])
def test_replicas_must_be_positive(
    capsys: pytest.CaptureFixture[str], plans: str, command: str
) -> None:
    assert run(capsys, command, plans, "--replicas", "0") == (
        2,
        "",
        "ptc: --replicas must be between 1 and 10000\n",
    )


# ---------------------------------------------------------------------------------------------
# plan


def test_plan_n4_at_25_percent(capsys: pytest.CaptureFixture[str], plans: str) -> None:
    data = plan_json(capsys, plans, "--rollout", "quarter")
    assert (data["rollout"], data["replicas"], data["maxSurge"], data["maxUnavailable"]) == (
        "quarter",
        4,
        1,
        0,
    )
    assert row(data) == (1, 3, 25.0, 5)
    assert data["steps"][0]["moves"] == [
        {"deployment": "canary", "replicas": 1},
        {"deployment": "stable", "replicas": 3},
    ]
    assert data["feasible"] is True
    assert data["steps"][-1]["step"] == "flip"
    assert data["minimumDuration"] == "6m"  # 1m hold + the default 5m bake


def test_plan_n10_at_41_percent(capsys: pytest.CaptureFixture[str], plans: str) -> None:
    data = plan_json(capsys, plans, "--rollout", "odd", "--replicas", "10")
    assert row(data) == (4, 6, 40.0, 11)
    assert data["steps"][0]["withinTolerance"] is True


def test_plan_n3_at_50_percent_without_surge(
    capsys: pytest.CaptureFixture[str], plans: str
) -> None:
    data = plan_json(capsys, plans, "--rollout", "tight", "--replicas", "3")
    assert (data["maxSurge"], data["maxUnavailable"]) == (0, 1)
    assert row(data) == (2, 1, 66.67, 3)
    assert data["steps"][0]["note"] == "weight 50% is approximated by 66.7% (tolerance 10 points)"


def test_plan_all_rollouts_as_json_is_a_list(
    capsys: pytest.CaptureFixture[str], plans: str
) -> None:
    code, out, err = run(capsys, "plan", plans, "--replicas", "4", "-o", "json")
    assert (code, err) == (0, "")
    assert [p["rollout"] for p in json.loads(out)] == ["quarter", "odd", "tight"]


def test_plan_table(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "plan", ZAI)
    assert (code, err) == (0, "")
    assert "rollout zai-proxy: zai-proxy -> zai-proxy-v2, N=4, maxSurge=1, maxUnavailable=0" in out
    lines = [" ".join(line.replace("│", " ").split()) for line in out.splitlines()]
    assert "step 1 25% 1 3 25.0% 5 1 2m 2m" in lines
    assert "flip 100% 4 1 100.0% 5 0 10m bake 22m" in lines
    assert (
        "minimum time to completion: 22m (holds and bake; pod start-up and analysis holds add "
        "to it)"
    ) in out


def test_plan_shows_serving_terminations_per_mode(
    capsys: pytest.CaptureFixture[str], plans: str
) -> None:
    standard = plan_json(capsys, plans, "--rollout", "quarter")
    assert standard["shifting"] == "standard"
    # Step 1 lowers stable 4 -> 3; the flip 3 -> 1 before the pin, both while serving.
    assert [s["servingPodsTerminated"] for s in standard["steps"]] == [1, 2]
    assert standard["servingPodsTerminated"] == 3
    # quarter has maxSurge 1 < N=4: surge mode cannot flip, and says why.
    code, out, err = run(
        capsys, "plan", plans, "--rollout", "quarter", "--shifting", "surge", "-o", "json"
    )
    surge = json.loads(out)
    assert (code, err, surge["feasible"], surge["shifting"]) == (2, "", False, "surge")
    assert surge["steps"][-1]["note"].startswith("infeasible: shifting: surge needs maxSurge >= 4")
    # With N=1 one surge pod is the full canary: surge mode works and stops no serving pod.
    one = plan_json(capsys, plans, "--rollout", "quarter", "--replicas", "1", "--shifting", "surge")
    assert (one["feasible"], one["servingPodsTerminated"]) == (True, 0)
    assert [(s["canary"], s["stable"]) for s in one["steps"]] == [(1, 1), (1, 1)]


def test_plan_table_names_the_serving_terminations(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "plan", ZAI)
    assert code == 0
    assert "3 pod(s) are terminated while the Service routes to them" in " ".join(out.split())


def test_plan_without_replicas_asks_for_them(
    capsys: pytest.CaptureFixture[str], plans: str
) -> None:
    assert run(capsys, "plan", plans, "--rollout", "odd") == (
        2,
        "",
        f"ptc: {plans}: rollout 'odd' sets no `replicas` (it takes stable's count when it "
        "starts): pass --replicas N to plan it\n",
    )


def test_plan_unknown_rollout_names_the_rollouts(
    capsys: pytest.CaptureFixture[str], plans: str
) -> None:
    assert run(capsys, "plan", plans, "--rollout", "zz") == (
        2,
        "",
        "ptc: no rollout named 'zz' (rollouts in this file: quarter, odd, tight)\n",
    )


def test_plan_invalid_config(capsys: pytest.CaptureFixture[str], invalid: str) -> None:
    code, out, err = run(capsys, "plan", invalid, "--replicas", "4")
    assert (code, out) == (2, "")
    assert err.splitlines()[0].startswith(f"{invalid}:8: rollout 'web': steps[1].weight:")


def test_plan_infeasible_exits_2(capsys: pytest.CaptureFixture[str], plans: str) -> None:
    code, out, err = run(
        capsys, "plan", plans, "--rollout", "tight", "--replicas", "1", "-o", "json"
    )
    assert (code, err) == (2, "")
    data = json.loads(out)
    assert data["feasible"] is False
    assert data["steps"][0]["canary"] is None
    assert data["steps"][0]["note"].startswith("infeasible: no split of 1 pod(s) + 0 surge")


def test_plan_empty_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("rollouts: []\n")
    assert run(capsys, "plan", str(empty)) == (2, "", f"ptc: {empty}: no rollouts to plan\n")


# ---------------------------------------------------------------------------------------------
# schema, help, usage


def test_schema_prints_the_committed_schema(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "schema")
    assert (code, out, err) == (0, schema_json(), "")
    assert (REPO / "config" / "schema.json").read_text() == out


@pytest.mark.parametrize(
    ("argv", "mentions"),
    [
        ([], ["validate", "plan", "schema", "Exit codes"]),
        (["validate"], ["FILE", "--replicas N", "FILE:LINE"]),
        (["plan"], ["FILE", "--rollout NAME", "--replicas N", "--output {table,json}"]),
        (["schema"], ["JSON schema", "config/schema.json"]),
    ],
)
def test_help(capsys: pytest.CaptureFixture[str], argv: list[str], mentions: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([*argv, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: ptc {' '.join(argv)}".rstrip())
    for text in mentions:
        assert text in out, text


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys)
    assert code == 2
    assert out.startswith("usage: ptc")


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["validate"], "the following arguments are required: FILE"),
        (["plan", "f.yaml", "--output", "xml"], "argument --output/-o: invalid choice: 'xml'"),
        (["plan", "f.yaml", "--replicas", "many"], "argument --replicas: invalid int value"),
        (["frobnicate"], "argument COMMAND: invalid choice: 'frobnicate'"),
    ],
)
def test_bad_arguments_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], error: str
) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert error in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# The installed console script


def _ptc() -> list[str]:
    beside = Path(sys.executable).with_name("ptc")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("ptc")
    assert found, "the ptc console script is not installed (pip install -e .)"
    return [found]


def test_console_script(invalid: str) -> None:
    ok = subprocess.run([*_ptc(), "validate", MINIMAL], capture_output=True, text=True)
    assert (ok.returncode, ok.stdout, ok.stderr) == (
        0,
        f"{MINIMAL}: ok (1 rollout, 0 warning(s))\n",
        "",
    )
    bad = subprocess.run([*_ptc(), "validate", invalid], capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stdout == ""
    assert bad.stderr.endswith(f"{invalid}: invalid (2 error(s))\n")
    assert "Traceback" not in bad.stderr
