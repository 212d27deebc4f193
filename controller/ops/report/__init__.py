"""`ptc report`: a rollout's timeline for postmortems, as self-contained HTML or a PNG.

- ``timeline`` (pure): :class:`RolloutState` (+ :class:`ReportSeries`) -> :class:`Timeline`.
- ``chart`` (matplotlib, Agg): Timeline -> SVG / PNG bytes; ``html``: Timeline -> one page.
- ``output``: :func:`render_report` writes .html/.png/.svg files (``ptc demo`` calls it).
- ``fetch`` (I/O): the state from the rollout's Service, range series from Prometheus.
- ``command``: :func:`make_report`, what ``ptc report`` runs.

Rendering modules import matplotlib, so they are imported when used, not here.
"""

from controller.ops.report.errors import BadReportRequest, ReportError
from controller.ops.report.model import (
    Marker,
    MarkerKind,
    MetricPanel,
    MetricSeries,
    Point,
    ReportSeries,
    Timeline,
)
from controller.ops.report.output import render_report
from controller.ops.report.timeline import build_timeline

__all__ = [
    "BadReportRequest",
    "Marker",
    "MarkerKind",
    "MetricPanel",
    "MetricSeries",
    "Point",
    "ReportError",
    "ReportSeries",
    "Timeline",
    "build_timeline",
    "render_report",
]
