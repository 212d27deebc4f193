"""`ptc report`: fetch the rollout's state (and series), then write the requested files."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from controller.ops.report.errors import BadReportRequest
from controller.ops.report.fetch import ReportRequest, fetch_report_data
from controller.ops.report.output import check_size, output_format, render_report


async def make_report(
    request: ReportRequest,
    outputs: Sequence[str | Path],
    *,
    width: int = 1600,
    height: int = 900,
    now: datetime | None = None,
) -> list[Path]:
    """Write the report of `request`'s rollout to each of `outputs`; the paths written.

    Names and sizes are checked before anything is fetched, so a typo costs no cluster round
    trip. Raises ReportError (BadReportRequest for bad input) with a message for people.
    """
    if not outputs:
        raise BadReportRequest("no output file: pass --output FILE.html or FILE.png")
    for path in outputs:
        output_format(path)
    check_size(width, height)
    data = await fetch_report_data(request, now=now)
    return await asyncio.to_thread(
        render_report,
        data.state,
        data.series,
        list(outputs),
        rollout=data.spec,
        namespace=data.namespace,
        width=width,
        height=height,
        now=now,
    )
