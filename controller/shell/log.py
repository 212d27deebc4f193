"""Structured logging: JSON lines in a cluster (stdout not a TTY), readable lines in a terminal.

Every reconciler binds `rollout`, `namespace`, `phase` and `step` in contextvars, so each line a
rollout's task logs carries them without passing a logger around. Lines from libraries that log
through the standard library (aiohttp, kr8s, urllib3, asyncio) go through the same renderer, with
their logger's name, so a JSON log stays JSON.

Event names (the first argument of ``log.info(...)`` and its siblings) are short lowercase
English phrases saying what happened: ``"config reloaded"``, ``"leadership acquired"``,
``"api error; retrying"``, ``"direct provider: scrape failed"``. Rules, checked over the
source by ``tests/unit/test_log_names.py``:

- start with a lowercase letter (a proper noun further on keeps its capital: "the Service");
- words are separated by spaces: no ``dotted.names`` and no ``snake_case``;
- a literal string, never formatted: values (names, counts, errors) go in key-value fields,
  so lines with the same meaning share one event name and can be counted and grepped;
- no full stop at the end.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal

import structlog

Format = Literal["auto", "json", "console"]


def configure_logging(fmt: Format = "auto", level: str = "info") -> None:
    """Configure structlog (and stdlib logging underneath) once per process."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}: use debug, info, warning or error")
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        # Resolve sys.stderr at each call: tests (and embedders) swap it after configuration.
        logger_factory=lambda *_: structlog.PrintLogger(sys.stderr),
        cache_logger_on_first_use=False,
    )
    handler = _StderrHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _StderrHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    # Libraries' own info lines are noise next to ptc's decisions; their warnings are not.
    root.setLevel(max(numeric, logging.WARNING))


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is at the time: tests and embedders swap it."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)
