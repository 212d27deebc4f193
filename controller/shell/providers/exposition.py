"""A parser for the Prometheus text exposition format (version 0.0.4), as Prometheus scrapes it.

Pure: text in, samples out. What it accepts follows Prometheus' own scrape parser (``promlex``
in ``pkg/textparse``) rather than the stricter Go client library, so that the direct provider
sees what Prometheus would store:

* ``# HELP name text`` (escapes ``\\\\`` and ``\\n``) and ``# TYPE name type``; any other
  ``#`` line is a comment. A second ``TYPE`` for the same name is an error, as is an unknown
  type. OpenMetrics' ``# EOF`` ends the input.
* ``name{label="value",...} value [timestamp]``: blanks are spaces or tabs; a trailing comma in
  the label block is allowed; label values understand ``\\"``, ``\\\\`` and ``\\n`` (any other
  escape is kept as written, as Prometheus does); a label name twice in one sample is an error.
* Values are Go floats: ``+Inf``, ``-Inf``, ``NaN`` (any case), exponents (no hex floats,
  no ``_`` digit separators).
  Timestamps are integer milliseconds and are reported, not interpreted.
* A sample's family is found by its exact name, else by the name without ``_total``,
  ``_bucket``, ``_sum``, ``_count``, ``_created`` (``# TYPE foo counter`` covers ``foo_total``
  as in OpenMetrics; ``# TYPE foo_total counter`` covers ``foo_total`` as in 0.0.4).

A syntax error anywhere raises `ExpositionError` naming the line: Prometheus rejects the whole
scrape then, and so does the direct provider. Empty label values are kept as written here; the
sample buffer drops them (``a=""`` is the same series as no ``a`` at all).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

Labels = tuple[tuple[str, str], ...]

METRIC_TYPES = frozenset(
    {
        "counter",
        "gauge",
        "histogram",
        "summary",
        "untyped",
        # OpenMetrics' extra types, so an OpenMetrics-ish body does not fail on its TYPE lines.
        "unknown",
        "info",
        "stateset",
        "gaugehistogram",
    }
)
# Suffixes a family's samples may carry, longest first so `_bucket` is tried before nothing.
FAMILY_SUFFIXES = ("_total", "_bucket", "_count", "_sum", "_created", "_gcount", "_gsum", "_info")

_BLANKS = " \t"
_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r'[ \t]*([a-zA-Z_][a-zA-Z0-9_]*)[ \t]*=[ \t]*"((?:[^"\\]|\\.)*)"[ \t]*')
_ESCAPE = re.compile(r"\\(.)")
_TIMESTAMP = re.compile(r"[+-]?[0-9]+")
_BLANK_RUN = re.compile(r"[ \t]+")
_DECIMAL_FLOAT = re.compile(
    r"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf|infinity|nan)",
    re.IGNORECASE,
)


class ExpositionError(ValueError):
    """The text is not valid exposition format; the message names the line."""


@dataclass(frozen=True)
class ExpositionSample:
    """One sample line: name, labels in written order, value, optional timestamp (ms)."""

    name: str
    labels: Labels
    value: float
    timestamp_ms: int | None = None

    def label_dict(self) -> dict[str, str]:
        """The labels as a dict."""
        return dict(self.labels)


@dataclass
class Exposition:
    """A parsed exposition: samples in order, plus each family's TYPE and HELP."""

    samples: list[ExpositionSample] = field(default_factory=list)
    types: dict[str, str] = field(default_factory=dict)
    help: dict[str, str] = field(default_factory=dict)

    def family_of(self, sample_name: str) -> str:
        """The family a sample name belongs to (itself when no TYPE/HELP claims it)."""
        if sample_name in self.types or sample_name in self.help:
            return sample_name
        for suffix in FAMILY_SUFFIXES:
            if sample_name.endswith(suffix):
                base = sample_name[: -len(suffix)]
                if base in self.types:
                    return base
        return sample_name

    def type_of(self, sample_name: str) -> str:
        """The declared type of the sample's family; ``untyped`` when none was declared."""
        return self.types.get(self.family_of(sample_name), "untyped")


def parse_float(token: str) -> float:
    """A float as Go's ``strconv.ParseFloat`` reads it: ``+Inf``, ``NaN``, ``1e3``, ``.5``."""
    if _DECIMAL_FLOAT.fullmatch(token):
        return float(token)
    raise ValueError(f"invalid value {token!r}")


def _unescape_label(raw: str) -> str:
    def one(match: re.Match[str]) -> str:
        char = match.group(1)
        if char == "n":
            return "\n"
        if char in '"\\':
            return char
        return match.group(0)  # unknown escape: kept as written (Prometheus' lvalReplacer)

    return _ESCAPE.sub(one, raw) if "\\" in raw else raw


def _unescape_help(raw: str) -> str:
    def one(match: re.Match[str]) -> str:
        char = match.group(1)
        if char == "n":
            return "\n"
        if char == "\\":
            return "\\"
        return match.group(0)

    return _ESCAPE.sub(one, raw) if "\\" in raw else raw


def _split_blank(text: str) -> list[str]:
    return [t for t in _BLANK_RUN.split(text) if t]


def parse(text: str) -> Exposition:
    """Parse a whole exposition; `ExpositionError` (naming the line) on any syntax error."""
    out = Exposition()
    for number, raw_line in enumerate(text.split("\n"), start=1):
        line = raw_line.rstrip("\r").lstrip(_BLANKS)
        if not line:
            continue
        try:
            if line.startswith("#"):
                if _comment(line, out):
                    break
            else:
                out.samples.append(_sample(line))
        except ValueError as exc:
            shown = raw_line if len(raw_line) <= 120 else raw_line[:117] + "..."
            raise ExpositionError(f"line {number}: {exc}: {shown!r}") from None
    return out


def _comment(line: str, out: Exposition) -> bool:
    """Handle a ``#`` line; True at ``# EOF``."""
    if line[1:2] not in (" ", "\t"):
        return False  # "#foo": an ordinary comment
    parts = _BLANK_RUN.split(line[1:].strip(_BLANKS), maxsplit=2)
    keyword = parts[0]
    if keyword == "EOF" and len(parts) == 1:
        return True
    if keyword not in ("HELP", "TYPE"):
        return False
    if len(parts) < 2 or not _NAME.fullmatch(parts[1]):
        raise ValueError(f"{keyword} without a valid metric name")
    name = parts[1]
    text = parts[2] if len(parts) > 2 else ""
    if keyword == "HELP":
        out.help[name] = _unescape_help(text)
        return False
    if text not in METRIC_TYPES:
        raise ValueError(f"invalid metric type {text!r}")
    if name in out.types:
        raise ValueError(f"second TYPE line for {name}")
    out.types[name] = text
    return False


def _sample(line: str) -> ExpositionSample:
    name_match = _NAME.match(line)
    if name_match is None:
        raise ValueError("expected a metric name")
    name = name_match.group(0)
    pos = name_match.end()
    while pos < len(line) and line[pos] in _BLANKS:
        pos += 1
    labels: list[tuple[str, str]] = []
    if pos < len(line) and line[pos] == "{":
        pos = _label_block(line, pos + 1, labels)
    elif pos == name_match.end() and pos < len(line):
        raise ValueError("expected '{' or a blank after the metric name")
    tokens = _split_blank(line[pos:])
    if not tokens:
        raise ValueError("missing value")
    if len(tokens) > 2:
        raise ValueError("unexpected text after the timestamp")
    value = parse_float(tokens[0])
    timestamp: int | None = None
    if len(tokens) == 2:
        if not _TIMESTAMP.fullmatch(tokens[1]):
            raise ValueError(f"invalid timestamp {tokens[1]!r}")
        timestamp = int(tokens[1])
    return ExpositionSample(name, tuple(labels), value, timestamp)


def _label_block(line: str, pos: int, labels: list[tuple[str, str]]) -> int:
    """Parse ``name="value",...}`` from `pos`; the position after ``}``."""
    seen: set[str] = set()
    while True:
        while pos < len(line) and line[pos] in _BLANKS:
            pos += 1
        if pos < len(line) and line[pos] == "}":
            return pos + 1
        match = _LABEL.match(line, pos)
        if match is None:
            raise ValueError('invalid label (expected name="value")')
        label = match.group(1)
        if label in seen:
            raise ValueError(f"label {label} appears twice")
        seen.add(label)
        labels.append((label, _unescape_label(match.group(2))))
        pos = match.end()
        if pos < len(line) and line[pos] == ",":
            pos += 1
        elif pos < len(line) and line[pos] == "}":
            return pos + 1
        else:
            raise ValueError("expected ',' or '}' after a label")


__all__ = [
    "METRIC_TYPES",
    "Exposition",
    "ExpositionError",
    "ExpositionSample",
    "Labels",
    "parse",
    "parse_float",
]
