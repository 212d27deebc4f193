"""Logging: ptc's own lines and the libraries' stdlib lines come out in one format."""

from __future__ import annotations

import json
import logging

import pytest
import structlog

from controller.shell.log import configure_logging


@pytest.fixture(autouse=True)
def _restore_logging() -> object:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()


def test_library_warnings_are_json_lines_with_the_logger_name(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("json", "info")
    structlog.get_logger("ptc.test").info("decided", rollout="web", step=2)
    logging.getLogger("aiohttp.access").warning("peer reset %s", "10.0.0.1")
    logging.getLogger("kr8s").info("library chatter below warning is dropped")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [(d["event"], d["level"]) for d in lines] == [
        ("decided", "info"),
        ("peer reset 10.0.0.1", "warning"),
    ]
    assert lines[0]["rollout"] == "web" and lines[0]["step"] == 2
    assert lines[1]["logger"] == "aiohttp.access"
    assert "timestamp" in lines[1]


def test_library_exceptions_keep_their_traceback_inside_the_json(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("json", "info")
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("asyncio").exception("Task exception was never retrieved")
    [line] = capsys.readouterr().err.splitlines()
    data = json.loads(line)
    assert data["event"] == "Task exception was never retrieved"
    assert "ValueError: boom" in data["exception"]


def test_configuring_twice_installs_one_handler(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("json", "info")
    configure_logging("json", "warning")
    logging.getLogger("urllib3").error("once")
    assert len(capsys.readouterr().err.splitlines()) == 1
