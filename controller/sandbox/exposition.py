"""Minimal Prometheus metric families rendered in the text exposition format (version 0.0.4).

The simulated pods need only counters, gauges and histograms with fixed label sets. The text
comes out byte for byte as Go's client_golang writes it, which is what the real zai-proxy (a
Go binary) serves: families sorted by name, each series' labels sorted by name (a histogram's
`le` last), series sorted by label values, float values as Go's ``strconv`` shortest ``%g``
(``1e+06``, ``1.234567e+06``), bucket and sample counts as integers.

Why not `prometheus_client` (a dependency, with per-instance `CollectorRegistry` and
`generate_latest`): its text is not what the real binary exposes. Checked with 0.26:
counters gain a ``_created`` family (off only process-wide, `disable_created_metrics()`,
which would change ptc's own /metrics too), values are Python floats (``5.0``, ``le="100.0"``
where Go writes ``5``, ``le="100"``), ``_count`` comes before ``_sum``, a histogram's ``le``
is sorted among the other labels, and families and series keep registration order. Queries
written against the sandbox must match the real binary's series, so the sandbox keeps this
writer (tested against hand-written Go output in tests/sandbox/test_exposition.py).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from decimal import Decimal

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

LabelValues = tuple[str, ...]


def format_value(value: float) -> str:
    """A float as client_golang's text writer does: Go's ``strconv.FormatFloat(v, 'g', -1, 64)``.

    The shortest digits that read back as the same float; an exponent (at least two digits)
    when the decimal exponent is below -4 or at least 6 (``1e+06``, ``1.5e-05``).
    """
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "0"  # -0 too: client_golang's writeFloat special-cases zero
    sign, digits, exponent = Decimal(repr(value)).as_tuple()
    assert isinstance(exponent, int)  # finite
    text = "".join(map(str, digits)).rstrip("0")
    exponent += len(digits) - len(text)  # the stripped zeros move into the exponent
    point = len(text) + exponent  # where the decimal point goes, counted from the first digit
    minus = "-" if sign else ""
    if point - 1 < -4 or point - 1 >= 6:
        mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
        power = point - 1
        return f"{minus}{mantissa}e{'+' if power >= 0 else '-'}{abs(power):02d}"
    if point <= 0:
        return f"{minus}0.{'0' * -point}{text}"
    if point >= len(text):
        return f"{minus}{text}{'0' * (point - len(text))}"
    return f"{minus}{text[:point]}.{text[point:]}"


def _escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _label_block(names: Sequence[str], values: Sequence[str]) -> str:
    if not names:
        return ""
    pairs = ",".join(
        f'{name}="{_escape_label_value(value)}"' for name, value in zip(names, values, strict=True)
    )
    return "{" + pairs + "}"


def _sorted_block(names: Sequence[str], values: Sequence[str]) -> str:
    """Label pairs in name order, as client_golang sorts a metric's label pairs."""
    pairs = sorted(zip(names, values, strict=True))
    return _label_block([n for n, _ in pairs], [v for _, v in pairs])


class _Family:
    kind = "untyped"

    def __init__(self, name: str, help_text: str, label_names: Sequence[str]) -> None:
        self.name = name
        self.help = help_text
        self.label_names = tuple(label_names)

    def _check(self, labels: LabelValues) -> None:
        if len(labels) != len(self.label_names):
            raise ValueError(f"{self.name} takes labels {self.label_names}, got {labels}")

    def _order(self, labels: LabelValues) -> list[str]:
        # Series sort by their label values taken in label-name order.
        return [v for _, v in sorted(zip(self.label_names, labels, strict=True))]

    def header(self) -> list[str]:
        """Return the `# HELP` and `# TYPE` lines."""
        return [f"# HELP {self.name} {_escape_help(self.help)}", f"# TYPE {self.name} {self.kind}"]

    def samples(self) -> list[str]:
        """Return the sample lines (without header)."""
        raise NotImplementedError


class Counter(_Family):
    """A monotonically increasing counter per label set."""

    kind = "counter"

    def __init__(self, name: str, help_text: str, label_names: Sequence[str]) -> None:
        super().__init__(name, help_text, label_names)
        self.values: dict[LabelValues, float] = {}

    def inc(self, labels: LabelValues, amount: float = 1.0) -> None:
        """Add `amount` (>= 0) to the series with these label values."""
        if amount < 0:
            raise ValueError("counters only go up")
        self._check(labels)
        self.values[labels] = self.values.get(labels, 0.0) + amount

    def get(self, labels: LabelValues) -> float:
        """Current value of one series (0 when it does not exist yet)."""
        return self.values.get(labels, 0.0)

    def samples(self) -> list[str]:
        """Return the sample lines."""
        return [
            f"{self.name}{_sorted_block(self.label_names, k)} {format_value(v)}"
            for k, v in sorted(self.values.items(), key=lambda kv: self._order(kv[0]))
        ]


class Gauge(_Family):
    """A value that can go up and down, per label set."""

    kind = "gauge"

    def __init__(self, name: str, help_text: str, label_names: Sequence[str]) -> None:
        super().__init__(name, help_text, label_names)
        self.values: dict[LabelValues, float] = {}

    def set(self, labels: LabelValues, value: float) -> None:
        """Set the series with these label values."""
        self._check(labels)
        self.values[labels] = value

    def get(self, labels: LabelValues) -> float:
        """Current value of one series (0 when it does not exist yet)."""
        return self.values.get(labels, 0.0)

    def samples(self) -> list[str]:
        """Return the sample lines."""
        return [
            f"{self.name}{_sorted_block(self.label_names, k)} {format_value(v)}"
            for k, v in sorted(self.values.items(), key=lambda kv: self._order(kv[0]))
        ]


class _HistogramSeries:
    __slots__ = ("buckets", "count", "sum")

    def __init__(self, n_buckets: int) -> None:
        self.buckets = [0] * n_buckets  # non-cumulative counts; +Inf is `count`
        self.count = 0
        self.sum = 0.0


class Histogram(_Family):
    """Cumulative-bucket histogram per label set."""

    kind = "histogram"

    def __init__(
        self, name: str, help_text: str, label_names: Sequence[str], buckets: Sequence[float]
    ) -> None:
        super().__init__(name, help_text, label_names)
        if "le" in label_names:
            raise ValueError("'le' is reserved for histogram buckets")
        self.bounds = sorted(float(b) for b in buckets if not math.isinf(b))
        self.series: dict[LabelValues, _HistogramSeries] = {}

    def observe(self, labels: LabelValues, value: float) -> None:
        """Record one observation."""
        self._check(labels)
        series = self.series.get(labels)
        if series is None:
            series = self.series[labels] = _HistogramSeries(len(self.bounds))
        index = bisect_left(self.bounds, value)  # le is inclusive: value == bound counts in it
        if index < len(self.bounds):
            series.buckets[index] += 1
        series.count += 1
        series.sum += value

    def count(self, labels: LabelValues) -> int:
        """Number of observations of one series."""
        series = self.series.get(labels)
        return series.count if series else 0

    def samples(self) -> list[str]:
        """Return `_bucket`, `_sum` and `_count` lines."""
        lines: list[str] = []
        for labels, series in sorted(self.series.items(), key=lambda kv: self._order(kv[0])):
            pairs = sorted(zip(self.label_names, labels, strict=True))
            names = [n for n, _ in pairs] + ["le"]
            values = [v for _, v in pairs]
            cumulative = 0
            for bound, n in zip(self.bounds, series.buckets, strict=True):
                cumulative += n
                block = _label_block(names, (*values, format_value(bound)))
                lines.append(f"{self.name}_bucket{block} {cumulative}")
            block = _label_block(names, (*values, "+Inf"))
            lines.append(f"{self.name}_bucket{block} {series.count}")
            plain = _sorted_block(self.label_names, labels)
            lines.append(f"{self.name}_sum{plain} {format_value(series.sum)}")
            lines.append(f"{self.name}_count{plain} {series.count}")
        return lines


Family = Counter | Gauge | Histogram


def render(families: Iterable[Family]) -> str:
    """Render families in the text exposition format; families without series are omitted."""
    lines: list[str] = []
    for family in sorted(families, key=lambda f: f.name):
        samples = family.samples()
        if samples:
            lines.extend(family.header())
            lines.extend(samples)
    return "\n".join(lines) + "\n" if lines else ""
