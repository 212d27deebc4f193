"""Every bad input of the corpus: exit 2, every problem at its line and path, no traceback, fast."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from controller.core.config import ConfigError, Problem, load_config
from controller.core.config.checks import Severity
from controller.ops.cli import main
from tests.unit.bad_inputs import Case, Expected, all_cases

CASES = all_cases()
# Generous for a shared machine with both cores busy; measured: well under 0.1 s for almost all
# cases, about 1 s for the file of 2000 rollouts just under the size limit.
SECONDS = 8.0


def test_the_corpus_is_large() -> None:
    assert len(CASES) >= 100
    assert len({c.name for c in CASES}) == len(CASES)


def _matches(problem: Problem, want: Expected) -> bool:
    return (
        (want.line is None or problem.line == want.line)
        and (want.path is None or problem.path == want.path)
        and want.text in problem.message
    )


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_bad_input_is_refused_with_every_problem_at_its_line(case: Case, tmp_path: Path) -> None:
    path = tmp_path / f"{case.name}.yaml"
    path.write_bytes(case.content)
    started = time.perf_counter()
    try:
        loaded = load_config(path)
    except ConfigError as exc:
        problems = exc.problems
    else:
        assert not case.expected, f"accepted: {case.name}"
        problems = loaded.warnings
    assert time.perf_counter() - started < SECONDS
    errors = [p for p in problems if p.severity is Severity.ERROR]
    shown = "\n".join(str(p) for p in errors)
    for want in case.expected:
        assert any(_matches(p, want) for p in errors), f"missing {want}; got:\n{shown}"
    if case.exact:
        assert len(errors) == len(case.expected), f"more than expected:\n{shown}"
    for p in errors:  # never a line past the end of the file
        assert p.line is None or 1 <= p.line <= max(1, case.content.count(b"\n") + 1)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_validate_exits_2_without_a_traceback(
    case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / f"{case.name}.yaml"
    path.write_bytes(case.content)
    code = main(["validate", str(path)])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert "internal error" not in err
    if case.expected:
        assert code == 2 and f"{path}: invalid (" in err
    else:
        assert code in (0, 2)
