"""Write a report file: the format follows the file name (.html, .png or .svg).

`render_report` is the one entry point for callers holding a state in memory (``ptc demo``
at the end of a run, ``ptc report`` after fetching it).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from controller.core.config.model import Rollout
from controller.core.state import RolloutState
from controller.ops.report.errors import BadReportRequest
from controller.ops.report.model import ReportSeries, Timeline
from controller.ops.report.timeline import build_timeline

FORMATS = {".html": "html", ".htm": "html", ".png": "png", ".svg": "svg"}
MIN_SIZE, MAX_SIZE = (400, 300), (10000, 10000)


def output_format(path: str | Path) -> str:
    """``html``, ``png`` or ``svg`` from the file name; BadReportRequest for anything else."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise BadReportRequest(
            f"{path}: unknown report format {suffix or '(no extension)'!r}: "
            "name the file .html, .png or .svg"
        )
    return FORMATS[suffix]


def check_size(width: int, height: int) -> None:
    """BadReportRequest unless the picture size is within sensible bounds."""
    if not (MIN_SIZE[0] <= width <= MAX_SIZE[0] and MIN_SIZE[1] <= height <= MAX_SIZE[1]):
        raise BadReportRequest(
            f"picture size {width}x{height} out of range: width {MIN_SIZE[0]}..{MAX_SIZE[0]}, "
            f"height {MIN_SIZE[1]}..{MAX_SIZE[1]} pixels"
        )


def write_timeline(
    timeline: Timeline, path: str | Path, *, width: int = 1600, height: int = 900
) -> Path:
    """Render `timeline` into `path` in the format its name asks for."""
    kind = output_format(path)
    check_size(width, height)
    # Imported here: matplotlib takes a while to import and only rendering needs it.
    from controller.ops.report.chart import render_png, render_svg
    from controller.ops.report.html import render_html

    target = Path(path)
    if kind == "html":
        target.write_text(render_html(timeline, width=width), encoding="utf-8")
    elif kind == "svg":
        target.write_text(render_svg(timeline, width, height), encoding="utf-8")
    else:
        target.write_bytes(render_png(timeline, width, height))
    return target


def render_report(
    state: RolloutState,
    series: ReportSeries | None,
    path: str | Path | Sequence[str | Path],
    *,
    rollout: Rollout | None = None,
    namespace: str = "",
    width: int = 1600,
    height: int = 900,
    now: datetime | None = None,
) -> list[Path]:
    """Write the timeline report of `state` to `path` (one file name or several).

    `series` is what Prometheus had (None: the decision records only); `rollout` is the
    rollout's config (per-step weights, metric definitions); `now` ends the timeline of a
    rollout still running. CPU-bound: from async code, call it with ``asyncio.to_thread``.
    """
    paths = [path] if isinstance(path, str | Path) else list(path)
    for p in paths:
        output_format(p)
    check_size(width, height)
    timeline = build_timeline(state, series, rollout=rollout, namespace=namespace, now=now)
    return [write_timeline(timeline, p, width=width, height=height) for p in paths]
