"""Log event names follow one convention (see `controller.shell.log`): checked over the source."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "controller"
METHODS = {"debug", "info", "warning", "error", "exception", "critical"}
# A literal phrase: lowercase start, no dots, underscores or format placeholders, no full stop.
NAME = re.compile(r"[a-z][^._%{}]*[^._%{}\s]|[a-z]")


def breaks_convention(name: str) -> bool:
    """Whether `name` is not a log event name by the convention."""
    return NAME.fullmatch(name) is None or name.endswith(".")


def _is_get_logger(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "get_logger"
        and "structlog" in ast.unparse(node.func.value)
    )


def structlog_calls(source: str) -> list[tuple[int, ast.expr]]:
    """(line, first argument) of each log call on a structlog logger in `source`.

    Loggers are what ``structlog.get_logger()`` returns and whatever is assigned from an
    expression that uses one (``log.bind(...)``, ``logger or log``), to a fixpoint.
    """
    tree = ast.parse(source)
    loggers: set[str] = set()
    assigns = [n for n in ast.walk(tree) if isinstance(n, ast.Assign | ast.AnnAssign)]
    changed = True
    while changed:
        changed = False
        for a in assigns:
            if a.value is None:
                continue
            uses = any(
                _is_get_logger(n) or (isinstance(n, ast.expr) and ast.unparse(n) in loggers)
                for n in ast.walk(a.value)
            )
            targets = a.targets if isinstance(a, ast.Assign) else [a.target]
            for t in targets:
                name = ast.unparse(t)
                if uses and name not in loggers:
                    loggers.add(name)
                    changed = True
    found = []
    for n in ast.walk(tree):
        if (
            isinstance(n, ast.Call)
            and isinstance(n.func, ast.Attribute)
            and n.func.attr in METHODS
            and n.args
            and (ast.unparse(n.func.value) in loggers or _is_get_logger(n.func.value))
        ):
            found.append((n.lineno, n.args[0]))
    return found


def violations(source: str, where: str) -> list[str]:
    out = []
    for line, arg in structlog_calls(source):
        if isinstance(arg, ast.JoinedStr):
            out.append(f"{where}:{line}: formatted event name {ast.unparse(arg)} (use fields)")
        elif (
            isinstance(arg, ast.Constant)
            and isinstance(arg.value, str)
            and breaks_convention(arg.value)
        ):
            out.append(f"{where}:{line}: event name {arg.value!r}")
    return out


def test_every_log_event_name_in_the_controller_follows_the_convention() -> None:
    found: list[str] = []
    checked = 0
    for path in sorted(ROOT.rglob("*.py")):
        source = path.read_text()
        checked += len(structlog_calls(source))
        found += violations(source, str(path.relative_to(ROOT.parent)))
    assert checked > 60  # the scan sees the controller's log calls (not vacuous)
    assert not found, "log event names breaking the convention (controller/shell/log.py):\n" + (
        "\n".join(found)
    )


@pytest.mark.parametrize(
    "name",
    ["config reloaded", "api error; retrying", "waiting", "state changed; re-reading the Service"],
)
def test_phrases_pass(name: str) -> None:
    assert not breaks_convention(name)


@pytest.mark.parametrize(
    "name",
    ["leader.acquired", "kube.watch.reconnect", "callback_failed", "Config reloaded", "done.", ""],
)
def test_dotted_snake_capitalised_and_full_stops_fail(name: str) -> None:
    assert breaks_convention(name)


def test_the_scan_finds_loggers_bound_and_passed_around() -> None:
    source = """
import structlog
log = structlog.get_logger("x")
class A:
    def __init__(self, logger=None):
        self._log = (logger or log).bind(a=1)
    def go(self, v):
        self._log.info("kube.list")
        log.warning(f"alert: {v}")
        bound = self._log.bind(b=2)
        bound.error("fine phrase")
        structlog.get_logger().debug("snake_name")
import logging
std = logging.getLogger("y")
std.info("stdlib %s lines are not structlog's", 1)
"""
    assert violations(source, "m.py") == [
        "m.py:8: event name 'kube.list'",
        "m.py:9: formatted event name f'alert: {v}' (use fields)",
        "m.py:12: event name 'snake_name'",
    ]
