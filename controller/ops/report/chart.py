"""Timeline -> a matplotlib figure -> SVG or PNG bytes.

Object-oriented matplotlib on the Agg canvas (no pyplot, so no global figure state and no GUI
backend). Fonts are matplotlib's bundled DejaVu Sans and SVG text is drawn as paths, so the
output looks the same on every machine and needs no font or network at view time.

Layout, top to bottom: a strip of decision labels, the canary weight, one panel per analysis
metric; all share the time axis, and every decision is a vertical line through every panel.
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import matplotlib as mpl
import matplotlib.dates as mdates
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.text import Text
from matplotlib.transforms import Bbox

from controller.ops.report.model import Marker, MarkerKind, MetricPanel, Point, Timeline

DEFAULT_WIDTH = 1600
DEFAULT_HEIGHT = 900
DPI = 100

KIND_COLORS: dict[MarkerKind, str] = {
    MarkerKind.START: "#6c757d",
    MarkerKind.STEP: "#0d6efd",
    MarkerKind.HOLD: "#fd7e14",
    MarkerKind.PAUSE: "#6f42c1",
    MarkerKind.COMMAND: "#d63384",
    MarkerKind.FLIP: "#0aa2c0",
    MarkerKind.BAKE: "#198754",
    MarkerKind.ROLLBACK: "#dc3545",
    MarkerKind.COMPLETED: "#146c43",
    MarkerKind.FAILED: "#842029",
    MarkerKind.OTHER: "#868e96",
}
# Background tint of the phases worth seeing at a glance; the others stay white.
PHASE_COLORS: dict[str, str] = {
    "holding": "#fff3cd",
    "paused": "#e2e3e5",
    "flipping": "#cff4fc",
    "baking": "#d1e7dd",
    "rolling-back": "#f8d7da",
    "rolled-back": "#fbeaec",
    "failed": "#f5c2c7",
}
CANARY_COLOR = "#0d6efd"
STABLE_COLOR = "#6c757d"
MAX_COLOR = "#dc3545"
MIN_COLOR = "#6f42c1"
RELATIVE_COLOR = "#fd7e14"
LABEL_FONT_SIZE = 8.0
LANE_PX = LABEL_FONT_SIZE * DPI / 72 * 1.75  # one row of decision labels
MAX_LANES = 8

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_RC: dict[str, Any] = {
    "date.epoch": "1970-01-01T00:00:00",  # what `_x` counts days from
    "svg.fonttype": "path",  # glyphs as paths: no font needed where the SVG is viewed
    "svg.hashsalt": "ptc-report",  # stable ids, so the same timeline gives the same SVG
    "text.parse_math": False,  # a '$' in a name is text, not mathtext
    "timezone": "UTC",
    "font.size": 9.0,
    "axes.titlesize": 9.5,
    "legend.fontsize": 8.0,
}


@contextmanager
def _style() -> Iterator[None]:
    # Cast: the rc key type in matplotlib's stubs is a Literal of every key, and changes.
    with mpl.rc_context(cast(Any, _RC)):
        yield


def _x(at: datetime) -> float:
    """matplotlib's date number (days since the epoch set in `_RC`); naive means UTC."""
    return ((at if at.tzinfo else at.replace(tzinfo=UTC)) - _EPOCH).total_seconds() / 86400


def _xs(points: Sequence[Point]) -> list[float]:
    return [_x(p.at) for p in points]


def _ys(points: Sequence[Point]) -> list[float]:
    return [p.value for p in points]


def _duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def title(timeline: Timeline) -> str:
    """The report's one-line title."""
    where = f" ({timeline.namespace})" if timeline.namespace else ""
    span = (
        f"{timeline.start:%Y-%m-%d %H:%M:%S} -> {timeline.end:%H:%M:%S} UTC "
        f"({_duration(timeline.end - timeline.start)})"
    )
    return (
        f"Rollout {timeline.rollout or '?'}{where}: {timeline.phase}, "
        f"attempt {timeline.attempt} - {span}"
    )


def figure_height(timeline: Timeline) -> int:
    """A height in pixels that gives every metric panel room (for the HTML's SVG)."""
    return 330 + 220 * max(len(timeline.metrics), 1)


def build_figure(
    timeline: Timeline,
    width: int = DEFAULT_WIDTH,
    height: int = DEFAULT_HEIGHT,
    *,
    titled: bool = True,
) -> Figure:
    """Draw the timeline on a new figure of `width` x `height` pixels (`titled`: with title)."""
    with _style():
        fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, layout="constrained")
        FigureCanvasAgg(fig)
        # The strip gets the pixels its rows of labels need; the panels share the rest.
        rest = [2.0] + [1.6] * len(timeline.metrics)
        strip_px = lanes_needed(timeline, width) * LANE_PX + 30
        panels_px = max(height - 110 - 25 * len(rest) - strip_px, 100)
        ratios = [sum(rest) * strip_px / panels_px, *rest]
        axes = fig.subplots(
            len(ratios), 1, sharex=True, squeeze=False, gridspec_kw={"height_ratios": ratios}
        )[:, 0]
        strip, weight, panels = axes[0], axes[1], list(axes[2:])
        if titled:
            fig.suptitle(title(timeline), x=0.01, ha="left", fontsize=11, fontweight="bold")

        pad = (timeline.end - timeline.start) * 0.02
        for ax in axes:
            ax.set_xlim(_x(timeline.start - pad), _x(timeline.end + pad))
            _shade_phases(ax, timeline)
            _decision_lines(ax, timeline)
        _weight_panel(weight, timeline)
        for ax, panel in zip(panels, timeline.metrics, strict=True):
            _metric_panel(ax, panel)
        _strip_axes(strip, timeline)

        bottom = axes[-1]
        # matplotlib.dates has no type hints.
        locator = mdates.AutoDateLocator(tz=UTC, minticks=5, maxticks=12)  # type: ignore[no-untyped-call]
        formatter = mdates.ConciseDateFormatter(locator, tz=UTC)  # type: ignore[no-untyped-call]
        bottom.xaxis.set_major_locator(locator)
        bottom.xaxis.set_major_formatter(formatter)
        bottom.set_xlabel("time (UTC)")

        # Fix the layout, then place the labels where they do not overlap in that layout.
        fig.draw_without_rendering()
        fig.set_layout_engine("none")
        _place_labels(strip, timeline)
        return fig


def _shade_phases(ax: Axes, timeline: Timeline) -> None:
    for span in timeline.spans:
        color = PHASE_COLORS.get(span.phase)
        if color:
            ax.axvspan(_x(span.start), _x(span.end), color=color, zorder=0, lw=0)


def _decision_lines(ax: Axes, timeline: Timeline) -> None:
    for m in timeline.markers:
        major = m.kind in (MarkerKind.ROLLBACK, MarkerKind.FAILED, MarkerKind.COMMAND)
        ax.axvline(
            _x(m.at),
            color=KIND_COLORS[m.kind],
            lw=1.6 if major else 1.0,
            ls="-" if major else (0, (4, 2)),
            alpha=0.9 if major else 0.6,
            zorder=1,
        )


def _phase_handles(timeline: Timeline) -> list[Patch]:
    present = dict.fromkeys(s.phase for s in timeline.spans if s.phase in PHASE_COLORS)
    return [Patch(facecolor=PHASE_COLORS[p], edgecolor="#adb5bd", label=p) for p in present]


def _legend(ax: Axes, handles: Sequence[Line2D | Patch], heading: str) -> None:
    ax.legend(
        handles=list(handles),
        title=heading,
        loc="upper left",
        bbox_to_anchor=(1.005, 1.0),
        frameon=False,
        title_fontproperties={"size": 8.5, "weight": "bold"},
        borderaxespad=0.0,
    )


def _weight_panel(ax: Axes, timeline: Timeline) -> None:
    source = "config steps" if timeline.weight_source == "config" else "step records"
    handles: list[Line2D | Patch] = []
    if timeline.desired_weight:
        (line,) = ax.step(
            _xs(timeline.desired_weight),
            _ys(timeline.desired_weight),
            where="post",
            color=CANARY_COLOR,
            lw=2.2,
            label=f"desired ({source})",
            zorder=3,
        )
        handles.append(line)
    if timeline.actual_weight:
        (line,) = ax.plot(
            _xs(timeline.actual_weight),
            _ys(timeline.actual_weight),
            color="#212529",
            lw=1.2,
            alpha=0.85,
            label="actual (Ready endpoints)",
            zorder=4,
        )
        handles.append(line)
    else:
        handles.append(Line2D([], [], color="none", label="actual: no Prometheus data"))
    handles.extend(_phase_handles(timeline))
    ax.set_ylim(-4, 106)
    ax.set_yticks([0, 25, 50, 75, 100])
    ax.set_ylabel("canary weight %")
    ax.set_title("Canary weight", loc="left")
    ax.grid(axis="y", alpha=0.3)
    _legend(ax, handles, "weight / phase")


def _metric_panel(ax: Axes, panel: MetricPanel) -> None:
    handles: list[Line2D | Patch] = []

    def plot(points: Sequence[Point], **kwargs: object) -> None:
        if points:
            (line,) = ax.plot(_xs(points), _ys(points), **kwargs)  # type: ignore[arg-type]
            handles.append(line)

    def step(points: Sequence[Point], **kwargs: object) -> None:
        if points:
            (line,) = ax.step(_xs(points), _ys(points), where="post", **kwargs)  # type: ignore[arg-type]
            handles.append(line)

    plot(panel.range_canary, color=CANARY_COLOR, lw=1.1, alpha=0.55, label="canary (Prometheus)")
    plot(panel.range_stable, color=STABLE_COLOR, lw=1.1, alpha=0.55, label="stable (Prometheus)")
    plot(panel.canary, color=CANARY_COLOR, marker="o", ms=4, lw=1, label="canary (recorded)")
    plot(panel.stable, color=STABLE_COLOR, marker="s", ms=3.5, lw=1, label="stable (recorded)")
    if panel.max_limit:
        step(
            panel.max_limit, color=MAX_COLOR, ls="--", lw=1.5, label=f"max {_last(panel.max_limit)}"
        )
    if panel.min_limit:
        step(
            panel.min_limit, color=MIN_COLOR, ls="--", lw=1.5, label=f"min {_last(panel.min_limit)}"
        )
    step(panel.relative_limit, color=RELATIVE_COLOR, ls=":", lw=1.6, label="limit vs stable")
    if panel.failing:
        failing = ax.scatter(
            _xs(panel.failing),
            _ys(panel.failing),
            marker="X",
            s=80,
            color=MAX_COLOR,
            edgecolors="white",
            linewidths=0.8,
            zorder=6,
            label="verdict: fail",
        )
        handles.append(
            Line2D([], [], color=MAX_COLOR, marker="X", ls="none", label=failing.get_label())
        )
    if not handles:
        ax.text(0.5, 0.5, "no values recorded", transform=ax.transAxes, ha="center", va="center")
    values = [p.value for p in (*panel.canary, *panel.stable, *panel.range_canary)]
    if values and min(values) >= 0:
        ax.set_ylim(bottom=0)
    threshold = f"   threshold: {panel.threshold_text}" if panel.threshold_text else ""
    ax.set_title(f"{panel.name}{threshold}", loc="left")
    ax.set_ylabel("\n".join(textwrap.wrap(panel.name, 18)) or panel.name)
    ax.grid(axis="y", alpha=0.3)
    if handles:
        _legend(ax, handles, panel.name)


def _last(points: Sequence[Point]) -> str:
    return f"{points[-1].value:g}"


def _strip_axes(ax: Axes, timeline: Timeline) -> None:
    ax.set_ylim(0, 1)
    ax.set_yticks([])
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    ax.set_title("Decisions (number = row in the decision table)", loc="left")
    kinds = dict.fromkeys(m.kind for m in timeline.markers)
    handles = [Line2D([], [], color=KIND_COLORS[k], lw=2, label=k.value) for k in kinds]
    if timeline.notes:
        ax.text(
            1.0,
            1.02,
            "; ".join(timeline.notes),
            transform=ax.transAxes,
            ha="right",
            va="bottom",
            fontsize=7.5,
            color="#842029",
        )
    if handles:
        _legend(ax, handles, "decisions")


def _label_text(marker: Marker) -> str:
    return f"{marker.index} {marker.label}"


def lanes_needed(timeline: Timeline, width: int) -> int:
    """How many rows of labels the strip needs so that no two labels overlap (estimated).

    Uses an average glyph width; `_place_labels` measures the real text afterwards.
    """
    span = (timeline.end - timeline.start).total_seconds() * 1.04 or 1.0
    axis_px = width * 0.8
    char_px = LABEL_FONT_SIZE * DPI / 72 * 0.62
    ends: list[float] = []
    for marker in timeline.markers:
        x = (marker.at - timeline.start).total_seconds() / span * axis_px
        w = len(_label_text(marker)) * char_px + 12
        for lane, last in enumerate(ends):
            if x >= last:
                ends[lane] = x + w
                break
        else:
            ends.append(x + w)
    return max(1, min(len(ends), MAX_LANES))


def _place_labels(ax: Axes, timeline: Timeline) -> None:
    """Label each decision in the first lane of the strip where it overlaps no other label.

    Measured in pixels in the final layout, left of the line when right of it is taken; a
    label that fits nowhere is shortened to its table number, and as a last resort goes on
    top in the least crowded lane.
    """
    if not timeline.markers:
        return
    fig = ax.get_figure()
    assert fig is not None
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    box = ax.get_window_extent(renderer)
    lanes = max(1, int((box.height - 4) // LANE_PX))
    placed: list[list[Bbox]] = [[] for _ in range(lanes)]

    def put(x: float, lane: int, text: str, color: str, align: str, zorder: float) -> Text:
        return ax.text(
            x,
            1.0 - (lane + 0.5) * LANE_PX / box.height,
            text,
            transform=ax.get_xaxis_transform(),
            ha=align,
            va="center",
            fontsize=LABEL_FONT_SIZE,
            color="#212529",
            clip_on=False,
            bbox={"boxstyle": "round,pad=0.25", "fc": "white", "ec": color, "lw": 1.2},
            zorder=zorder,
        )

    for marker in timeline.markers:
        color = KIND_COLORS[marker.kind]
        x = _x(marker.at)
        done = False
        for text in (_label_text(marker), str(marker.index)):
            for lane in range(lanes):
                for align in ("left", "right"):
                    artist = put(x, lane, text, color, align, 5)
                    extent = artist.get_window_extent(renderer).padded(3)
                    inside = box.x0 - 40 <= extent.x0 and extent.x1 <= box.x1 + 10
                    if inside and not any(extent.overlaps(o) for o in placed[lane]):
                        placed[lane].append(extent)
                        done = True
                        break
                    artist.remove()
                if done:
                    break
            if done:
                break
        if not done:
            lane = min(range(lanes), key=lambda i: len(placed[i]))
            artist = put(x, lane, str(marker.index), color, "left", 6)
            placed[lane].append(artist.get_window_extent(renderer))


def render_png(
    timeline: Timeline, width: int = DEFAULT_WIDTH, height: int = DEFAULT_HEIGHT
) -> bytes:
    """The chart as a PNG of exactly `width` x `height` pixels."""
    fig = build_figure(timeline, width, height)
    buf = io.BytesIO()
    with _style():
        fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": "ptc report"})
    return buf.getvalue()


def render_svg(
    timeline: Timeline,
    width: int = DEFAULT_WIDTH,
    height: int | None = None,
    *,
    titled: bool = True,
) -> str:
    """The chart as a standalone SVG document (no external references)."""
    fig = build_figure(timeline, width, height or figure_height(timeline), titled=titled)
    buf = io.BytesIO()
    with _style():
        fig.savefig(buf, format="svg", dpi=DPI, metadata={"Date": None, "Creator": "ptc report"})
    return buf.getvalue().decode("utf-8")
