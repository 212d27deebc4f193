"""Timeline -> one self-contained HTML page: the chart as inline SVG plus the decision table.

Self-contained means it opens from disk on a machine without network: no scripts, no
stylesheets, fonts or images from elsewhere (the SVG draws text as paths). The SVG's XML
prolog and namespace declarations are dropped: HTML parses inline ``<svg>`` without them, and
the page then holds no URL that a reader could mistake for an external reference.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from html import escape

from controller import __version__
from controller.core.state import MetricRecord
from controller.ops.report.chart import KIND_COLORS, render_svg, title
from controller.ops.report.model import MarkerKind, TableRow, Timeline

_PROLOG = re.compile(r"^.*?(?=<svg[\s>])", re.DOTALL)
_NAMESPACE = re.compile(r'\s+xmlns(?::\w+)?="[^"]*"')
_METADATA = re.compile(r"<metadata>.*?</metadata>\s*", re.DOTALL)

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
 margin:1.5rem;color:#212529;background:#fff;font-size:14px}
h1{font-size:1.35rem;margin:0 0 .4rem} h2{font-size:1.1rem;margin:1.6rem 0 .5rem}
dl.summary{display:grid;grid-template-columns:max-content auto;gap:.15rem 1rem;margin:0}
dl.summary dt{font-weight:600;color:#495057} dl.summary dd{margin:0}
ul.notes{color:#842029;margin:.6rem 0}
figure{margin:1rem 0;border:1px solid #dee2e6;border-radius:4px;padding:.3rem}
figure svg{width:100%;height:auto;display:block}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{border-bottom:1px solid #dee2e6;padding:.3rem .45rem;text-align:left;vertical-align:top}
th{background:#f1f3f5;position:sticky;top:0}
tbody tr:nth-child(even){background:#f8f9fa}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.time{white-space:nowrap;font-variant-numeric:tabular-nums}
td.decision{font-weight:600;white-space:nowrap;border-left:5px solid #adb5bd}
tr.user td.by{font-weight:700;color:#a61e4d}
ul.metrics{margin:0;padding-left:1rem;font-size:12px} td.reason{min-width:18rem}
.v-pass{color:#146c43;font-weight:600} .v-fail{color:#dc3545;font-weight:700}
.v-inconclusive{color:#b35c00;font-weight:600} .v-error{color:#842029;font-weight:700}
.legend span{display:inline-block;margin-right:.9rem}
.legend i{display:inline-block;width:.8rem;height:.8rem;margin-right:.3rem;vertical-align:-1px}
pre{background:#f8f9fa;padding:.5rem;overflow-x:auto;font-size:12px}
footer{margin-top:2rem;color:#868e96;font-size:12px}
"""


def inline_svg(svg: str) -> str:
    """A standalone SVG document made fit to sit inside HTML (no prolog, no namespaces)."""
    svg = _PROLOG.sub("", svg, count=1)
    svg = _METADATA.sub("", svg)
    head, sep, rest = svg.partition(">")
    return _NAMESPACE.sub("", head) + sep + rest


def _kind_css() -> str:
    return "".join(
        f"tr.k-{kind.value} td.decision{{border-left-color:{color}}}"
        for kind, color in KIND_COLORS.items()
    )


def _num(x: float | None) -> str:
    return "no data" if x is None else f"{x:.4g}"


def _elapsed(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    sign = "-" if seconds < 0 else "+"
    h, rest = divmod(abs(seconds), 3600)
    m, s = divmod(rest, 60)
    return f"{sign}{h}:{m:02d}:{s:02d}"


def _metric_item(m: MetricRecord) -> str:
    stable = f" (stable {_num(m.stable)})" if m.stable is not None else ""
    threshold = f" vs {escape(m.threshold)}" if m.threshold else ""
    # The evaluator's detail repeats value and threshold unless it says something else
    # ("no data for canary", "12 requests < minRequests 50", "stable breaches too").
    repeats = m.detail.startswith(f"{_num(m.value)} vs ")
    detail = f" - {escape(m.detail)}" if m.detail and not repeats else ""
    verdict = escape(m.verdict)
    return (
        f'<li><b>{escape(m.name)}</b>: <span class="v-{verdict}">{verdict}</span> '
        f"{_num(m.value)}{stable}{threshold}{detail}</li>"
    )


def _row(row: TableRow) -> str:
    r = row.record
    user = " user" if r.by != "ptc" else ""
    metrics = (
        '<ul class="metrics">' + "".join(_metric_item(m) for m in r.metrics) + "</ul>"
        if r.metrics
        else ""
    )
    at = r.at.astimezone(UTC)
    return (
        f'<tr class="k-{row.kind.value}{user}" id="d{row.index}">'
        f'<td class="num">{row.index}</td>'
        f'<td class="time">{at:%Y-%m-%d %H:%M:%S}</td>'
        f'<td class="num">{_elapsed(row.elapsed)}</td>'
        f"<td>{escape(r.phase)}</td>"
        f'<td class="num">{r.step + 1}</td>'
        f'<td class="decision">{escape(r.decision)}</td>'
        f'<td class="by">{escape(r.by)}</td>'
        f'<td class="reason">{escape(r.reason)}</td>'
        f"<td>{metrics}</td></tr>"
    )


def _summary(t: Timeline) -> str:
    items = [
        ("rollout", t.rollout),
        ("namespace", t.namespace),
        ("phase", f"{t.phase} (attempt {t.attempt})"),
        ("message", t.message),
        ("from", f"{t.start.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"),
        ("to", f"{t.end.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"),
        (
            "desired weight",
            "per step from the config"
            if t.weight_source == "config"
            else "from the step-reached records",
        ),
        ("series", t.series_source or "decision records only (no Prometheus)"),
    ]
    return (
        '<dl class="summary">'
        + "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in items if v)
        + "</dl>"
    )


def _legend() -> str:
    spans = "".join(
        f'<span><i style="background:{color}"></i>{escape(kind.value)}</span>'
        for kind, color in KIND_COLORS.items()
        if kind is not MarkerKind.OTHER
    )
    return f'<p class="legend">Row colours: {spans}</p>'


def _queries(t: Timeline) -> str:
    blocks = [
        f"<details><summary>{escape(p.name)}</summary><pre>"
        + "\n".join(escape(q) for q in p.queries)
        + "</pre></details>"
        for p in t.metrics
        if p.queries
    ]
    if not blocks:
        return ""
    return "<h2>Prometheus queries (canary, stable)</h2>" + "".join(blocks)


def render_html(timeline: Timeline, *, width: int = 1600, generated: datetime | None = None) -> str:
    """The report page: summary, chart (inline SVG), decision table, queries."""
    svg = inline_svg(render_svg(timeline, width, titled=False))
    notes = (
        '<ul class="notes">' + "".join(f"<li>{escape(n)}</li>" for n in timeline.notes) + "</ul>"
        if timeline.notes
        else ""
    )
    header = (
        "<tr><th>#</th><th>time (UTC)</th><th>elapsed</th><th>phase</th><th>step</th>"
        "<th>decision</th><th>by</th><th>reason</th><th>metrics (verdict, canary value, "
        "stable, threshold)</th></tr>"
    )
    rows = "".join(_row(r) for r in timeline.rows) or (
        '<tr><td colspan="9">no decisions recorded</td></tr>'
    )
    when = (generated or datetime.now(UTC)).astimezone(UTC)
    page_title = escape(title(timeline))
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'
        f"<title>{page_title}</title>"
        f"<style>{_CSS}{_kind_css()}</style></head>\n<body>\n"
        f"<h1>{page_title}</h1>\n{_summary(timeline)}\n{notes}\n"
        f'<figure aria-label="rollout timeline">{svg}</figure>\n'
        f"<h2>Decisions</h2>\n{_legend()}\n"
        f"<table><thead>{header}</thead><tbody>\n{rows}\n</tbody></table>\n"
        f"{_queries(timeline)}\n"
        f"<footer>Generated by ptc {escape(__version__)} report at "
        f"{when:%Y-%m-%d %H:%M:%S} UTC from the {escape('ptc.dev/state')} annotation.</footer>\n"
        "</body></html>\n"
    )
