"""A backtest as one self-contained HTML page: the answer, the report's chart, the tables.

Like ``ptc report``'s page it needs no network to open: the chart is inline SVG with text as
paths, and there are no scripts or external styles. The tick table lists the ticks where
some verdict changed (plus the first and the last); the JSON output has every tick.
"""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape

from controller import __version__
from controller.core.analysis.evaluate import Verdict
from controller.ops.backtest.model import BacktestResult, TickResult
from controller.ops.backtest.picture import build_backtest_timeline, moments
from controller.ops.backtest.render import capacity_cell, header_lines, metric_cell, outcome_lines
from controller.ops.report.chart import KIND_COLORS, render_svg
from controller.ops.report.html import inline_svg

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
 margin:1.5rem;color:#212529;background:#fff;font-size:14px}
h1{font-size:1.35rem;margin:0 0 .4rem} h2{font-size:1.1rem;margin:1.6rem 0 .5rem}
p.answer{font-size:1.05rem;font-weight:600} ul.notes{color:#842029}
pre{background:#f8f9fa;padding:.5rem;overflow-x:auto;font-size:12px}
figure{margin:1rem 0;border:1px solid #dee2e6;border-radius:4px;padding:.3rem}
figure svg{width:100%;height:auto;display:block}
table{border-collapse:collapse;font-size:13px}
th,td{border-bottom:1px solid #dee2e6;padding:.3rem .45rem;text-align:left;vertical-align:top}
th{background:#f1f3f5} td.time{white-space:nowrap;font-variant-numeric:tabular-nums}
td.mark{border-left:5px solid #adb5bd;font-weight:600;white-space:nowrap}
.v-pass{color:#146c43} .v-fail{color:#dc3545;font-weight:700}
.v-inconclusive{color:#b35c00;font-weight:600} .v-error{color:#842029;font-weight:700}
footer{margin-top:2rem;color:#868e96;font-size:12px}
"""


def _time(at: datetime | None) -> str:
    return "-" if at is None else f"{at.astimezone(UTC):%Y-%m-%d %H:%M:%S}"


def _changed(ticks: tuple[TickResult, ...]) -> list[TickResult]:
    """The first and last tick and every tick where a verdict differs from the tick before."""

    def key(t: TickResult) -> tuple[str, ...]:
        capacity = t.capacity.verdict.value if t.capacity else ""
        return (t.summary.verdict.value, capacity, *(m.verdict.value for m in t.summary.metrics))

    out = []
    for i, tick in enumerate(ticks):
        if i in (0, len(ticks) - 1) or key(tick) != key(ticks[i - 1]):
            out.append(tick)
    return out


def _cell(text: str) -> str:
    verdict = text.split(" ", 1)[0]
    return f'<td><span class="v-{escape(verdict)}">{escape(text)}</span></td>'


def _tick_table(result: BacktestResult) -> str:
    names = [m.name for m in result.spec.analysis.metrics]
    gate = result.spec.analysis.capacity_gate is not None
    head = "".join(
        f"<th>{escape(h)}</th>"
        for h in ["time (UTC)", "verdict", *names, *(["capacity"] if gate else [])]
    )
    rows = []
    for tick in _changed(result.ticks):
        by_name = {m.name: m for m in tick.summary.metrics}
        cells = [f'<td class="time">{_time(tick.at)}</td>', _cell(tick.summary.verdict.value)]
        cells += [
            _cell(metric_cell(by_name[n], tick.at)) if n in by_name else "<td>-</td>" for n in names
        ]
        if gate:
            cells.append(_cell(capacity_cell(tick.capacity)))
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _moment_table(result: BacktestResult) -> str:
    rows = [
        f'<tr><td>{m.index}</td><td class="time">{_time(m.at)}</td>'
        f'<td class="mark" style="border-left-color:{KIND_COLORS[m.kind]}">{escape(m.label)}</td>'
        f"<td>{escape(m.reason)}</td></tr>"
        for m in moments(result)
    ]
    if not rows:
        return "<p>No metric held or failed in this period.</p>"
    return (
        "<table><thead><tr><th>#</th><th>time (UTC)</th><th>what</th><th>why</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _metric_table(result: BacktestResult) -> str:
    rows = [
        f"<tr><td>{escape(m.name)}</td><td>{escape(m.threshold)}</td>"
        f'<td class="time">{_time(m.first_pass)}</td><td class="time">{_time(m.first_hold)}</td>'
        f'<td class="time">{_time(m.first_fail)}</td>'
        f"<td>{' / '.join(str(m.counts.get(v.value, 0)) for v in Verdict)}</td></tr>"
        for m in result.summary.metrics
    ]
    return (
        "<table><thead><tr><th>metric</th><th>threshold</th><th>first pass</th>"
        "<th>first hold</th><th>first fail</th><th>ticks pass / inconclusive / error / fail"
        f"</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def render_backtest_html(
    result: BacktestResult, *, width: int = 1600, generated: datetime | None = None
) -> str:
    """The page: what was replayed, the answer, the chart, moments, metrics, ticks, queries."""
    timeline = build_backtest_timeline(result)
    svg = inline_svg(render_svg(timeline, width, titled=False))
    spec = result.spec
    title = (
        f"Backtest: rollout {spec.rollout.name}, step {spec.step + 1}/{len(spec.rollout.steps)}, "
        f"{_time(spec.start)} -> {_time(spec.end)} UTC"
    )
    header = "\n".join(header_lines(result))
    outcome, *rest = outcome_lines(result)
    notes = [line for line in rest if line.startswith("note: ")]
    others = [line for line in rest if not line.startswith("note: ")]
    notes_html = (
        '<ul class="notes">' + "".join(f"<li>{escape(n[6:])}</li>" for n in notes) + "</ul>"
        if notes
        else ""
    )
    queries = "\n".join(escape(q) for q in result.queries)
    when = (generated or datetime.now(UTC)).astimezone(UTC)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head>\n<body>\n"
        f"<h1>{escape(title)}</h1>\n"
        f'<p class="answer">{escape(outcome)}</p>\n'
        + "".join(f"<p>{escape(line)}</p>" for line in others)
        + f"\n{notes_html}\n<pre>{escape(header)}</pre>\n"
        f'<figure aria-label="backtest timeline">{svg}</figure>\n'
        f"<h2>Moments (numbers as on the chart)</h2>\n{_moment_table(result)}\n"
        f"<h2>Per metric</h2>\n{_metric_table(result)}\n"
        f"<h2>Ticks where a verdict changed (of {len(result.ticks)})</h2>\n{_tick_table(result)}\n"
        f"<h2>Prometheus queries</h2>\n<pre>{queries}</pre>\n"
        f"<footer>Generated by ptc {escape(__version__)} backtest at "
        f"{when:%Y-%m-%d %H:%M:%S} UTC.</footer>\n</body></html>\n"
    )


__all__ = ["render_backtest_html"]
