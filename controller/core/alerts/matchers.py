"""Alertmanager/Prometheus label matchers (pure): ``name="v"``, ``!=``, ``=~`` and ``!~``.

The syntax is Alertmanager's (``alertname=~"ZaiProxy.*"``): a label name, an operator and a value,
double-quoted (``\\"``, ``\\\\`` and ``\\n`` are escapes, any other backslash is kept, so
``"\\d+"`` is the regex ``\\d+``) or bare. Regexes are fully anchored as in Prometheus:
``=~"Zai"`` matches the value ``Zai`` only, not ``ZaiProxy``. A label the alert does not carry
has the value ``""`` (so ``severity!="page"`` matches an alert without a severity, as in
Alertmanager). Regexes run on Python's ``re``; the RE2 syntax alerting rules use in practice
(classes, alternation, repetition, ``(?i)``) means the same in both.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

_MATCHER = re.compile(r"\s*([A-Za-z_:][A-Za-z0-9_:]*)\s*(=~|!~|!=|=)\s*(.*?)\s*", re.DOTALL)
# As Alertmanager's parser: these three escapes; any other backslash stays literal ("\d+" works).
_ESCAPES = {"n": "\n", "\\": "\\", '"': '"'}


class MatcherError(ValueError):
    """A matcher string that cannot be parsed; the message says what is expected."""


class Op(StrEnum):
    """A matcher's operator."""

    EQ = "="
    NE = "!="
    RE = "=~"
    NRE = "!~"


@dataclass(frozen=True)
class Matcher:
    """One parsed matcher; `matches(labels)` judges an alert's labels."""

    name: str
    op: Op
    value: str
    _regex: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether `labels` satisfy this matcher (a missing label counts as "")."""
        actual = labels.get(self.name, "")
        if self.op is Op.EQ:
            return actual == self.value
        if self.op is Op.NE:
            return actual != self.value
        assert self._regex is not None
        found = self._regex.fullmatch(actual) is not None
        return found if self.op is Op.RE else not found

    def __str__(self) -> str:
        return f"{self.name}{self.op.value}{quote(self.value)}"


def quote(value: str) -> str:
    """A value as a double-quoted matcher string (the parser reads it back unchanged)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _unquote(text: str) -> str:
    quoted = len(text) >= 2 and text.startswith('"') and text.endswith('"')
    body = text[1:-1] if quoted else text
    out: list[str] = []
    escaped = False
    for ch in body:
        if escaped:
            out.append(_ESCAPES.get(ch, "\\" + ch))
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            raise MatcherError(f'unescaped " in the value {text}: write \\" inside quotes')
        else:
            out.append(ch)
    if escaped:
        out.append("\\")
    return "".join(out)


def parse_matcher(text: str) -> Matcher:
    """``alertname=~"ZaiProxy.*"`` -> Matcher; MatcherError saying what is wrong."""
    found = _MATCHER.fullmatch(text)
    if found is None:
        raise MatcherError(
            f'expected NAME OP "VALUE" with OP one of =, !=, =~, !~ '
            f'(e.g. alertname=~"ZaiProxy.*"), got {text!r}'
        )
    name, op_text, raw = found.groups()
    op = Op(op_text)
    value = _unquote(raw)
    regex = None
    if op in (Op.RE, Op.NRE):
        try:
            regex = re.compile(value)
        except re.error as exc:
            raise MatcherError(f"bad regex {value!r}: {exc}") from None
    return Matcher(name, op, value, regex)


def matches_all(matchers: tuple[Matcher, ...], labels: Mapping[str, str]) -> bool:
    """Whether every matcher holds for `labels` (an empty tuple matches everything)."""
    return all(m.matches(labels) for m in matchers)
