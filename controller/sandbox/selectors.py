"""Kubernetes label and field selectors: parsing, validation and matching (pure).

Grammar follows ``k8s.io/apimachinery/pkg/labels`` (``=``, ``==``, ``!=``, ``in``, ``notin``,
``key``, ``!key``, ``gt``/``lt`` as ``>``/``<``) and ``pkg/fields`` (``=``, ``==``, ``!=``, no
set-based terms; empty terms are skipped, which kr8s relies on: it sends ``metadata.name=x,``).
Parse errors raise :class:`SelectorError`; the API server answers them with 400 BadRequest.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

Operator = Literal["=", "!=", "in", "notin", "exists", "!", "gt", "lt"]

_NAME_RE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)$")
_DNS_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


class SelectorError(ValueError):
    """A selector string or LabelSelector object that the API server would reject."""


def label_key_errors(key: str) -> list[str]:
    """Return why ``key`` is not a valid qualified label key (empty list when valid)."""
    prefix, sep, name = key.rpartition("/")
    errors: list[str] = []
    if sep and (not prefix or len(prefix) > 253 or not _DNS_SUBDOMAIN_RE.match(prefix)):
        errors.append("prefix part must be a lowercase RFC 1123 subdomain")
    if not name:
        errors.append("name part must be non-empty")
    elif len(name) > 63:
        errors.append("name part must be no more than 63 characters")
    elif not _NAME_RE.match(name):
        errors.append(
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must "
            "start and end with an alphanumeric character"
        )
    return errors


def label_value_errors(value: str) -> list[str]:
    """Return why ``value`` is not a valid label value (empty list when valid)."""
    if value == "":
        return []
    if len(value) > 63:
        return ["must be no more than 63 characters"]
    if not _NAME_RE.match(value):
        return [
            "a valid label must be an empty string or consist of alphanumeric characters, "
            "'-', '_' or '.', and must start and end with an alphanumeric character"
        ]
    return []


@dataclass(frozen=True)
class Requirement:
    """One term of a label selector, e.g. ``tier in (a,b)``."""

    key: str
    op: Operator
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether a label set satisfies this term (same rules as apimachinery)."""
        present = self.key in labels
        if self.op in ("=", "in"):
            return present and labels[self.key] in self.values
        if self.op in ("!=", "notin"):
            return not present or labels[self.key] not in self.values
        if self.op == "exists":
            return present
        if self.op == "!":
            return not present
        if not present:
            return False
        try:
            have, want = int(labels[self.key]), int(self.values[0])
        except ValueError:
            return False
        return have > want if self.op == "gt" else have < want

    def __str__(self) -> str:
        if self.op == "exists":
            return self.key
        if self.op == "!":
            return f"!{self.key}"
        if self.op in ("in", "notin"):
            return f"{self.key} {self.op} ({','.join(sorted(self.values))})"
        symbol = {"=": "=", "!=": "!=", "gt": ">", "lt": "<"}[self.op]
        return f"{self.key}{symbol}{self.values[0]}"


@dataclass(frozen=True)
class LabelSelector:
    """A conjunction of requirements; the empty selector matches everything."""

    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        """Whether every requirement holds for ``labels``."""
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    def empty(self) -> bool:
        """True when the selector selects everything."""
        return not self.requirements

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


_TOKEN_RE = re.compile(r"\s*(==|!=|=|\(|\)|,|!|>|<|[^\s=!(),<>]+)")


def _tokenize(text: str) -> list[str]:
    tokens: list[str] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if m is None:
            if text[pos:].strip() == "":
                break
            raise SelectorError(f"unable to parse requirement: unexpected input at {text[pos:]!r}")
        tokens.append(m.group(1))
        pos = m.end()
    return tokens


_SYMBOLS = {"==", "!=", "=", "(", ")", ",", "!", ">", "<"}


def _check_key(key: str) -> str:
    if key in _SYMBOLS or key in ("in", "notin"):
        raise SelectorError(f"unable to parse requirement: found '{key}', expected: identifier")
    errors = label_key_errors(key)
    if errors:
        raise SelectorError(f"unable to parse requirement: invalid label key {key!r}: {errors[0]}")
    return key


def _check_value(value: str) -> str:
    errors = label_value_errors(value)
    if errors:
        raise SelectorError(f"invalid label value: {value!r}: {errors[0]}")
    return value


def parse_label_selector(text: str | None) -> LabelSelector:
    """Parse a ``labelSelector`` query string; raise SelectorError like the real server."""
    tokens = _tokenize(text or "")
    reqs: list[Requirement] = []
    i = 0

    def peek(k: int = 0) -> str | None:
        return tokens[i + k] if i + k < len(tokens) else None

    while i < len(tokens):
        if peek() == "!":
            i += 1
            key = _check_key(peek() or "")
            reqs.append(Requirement(key, "!"))
            i += 1
        else:
            key = _check_key(peek() or "")
            i += 1
            op = peek()
            if op is None or op == ",":
                reqs.append(Requirement(key, "exists"))
            elif op in ("=", "==", "!="):
                i += 1
                value = peek()
                if value is None or value == ",":
                    value = ""
                elif value in _SYMBOLS:
                    raise SelectorError(
                        f"unable to parse requirement: found '{value}', expected: identifier"
                    )
                else:
                    i += 1
                reqs.append(Requirement(key, "!=" if op == "!=" else "=", (_check_value(value),)))
            elif op in (">", "<"):
                i += 1
                value = peek() or ""
                if not value.lstrip("-").isdigit():
                    raise SelectorError(
                        "unable to parse requirement: for 'gt', 'lt' operators, the value "
                        f"must be an integer, got {value!r}"
                    )
                i += 1
                reqs.append(Requirement(key, "gt" if op == ">" else "lt", (value,)))
            elif op in ("in", "notin"):
                i += 1
                if peek() != "(":
                    raise SelectorError(
                        f"unable to parse requirement: found '{peek()}', expected: '('"
                    )
                i += 1
                values: list[str] = []
                expect_value = True
                while peek() != ")":
                    tok = peek()
                    if tok is None:
                        raise SelectorError("unable to parse requirement: found '', expected: ')'")
                    if tok == ",":
                        if expect_value:
                            values.append("")
                        expect_value = True
                    else:
                        if not expect_value or tok in _SYMBOLS:
                            raise SelectorError(
                                f"unable to parse requirement: found '{tok}', expected: ',' or ')'"
                            )
                        values.append(_check_value(tok))
                        expect_value = False
                    i += 1
                if expect_value:
                    values.append("")
                i += 1
                reqs.append(Requirement(key, op, tuple(sorted(set(values)))))  # type: ignore[arg-type]
            else:
                raise SelectorError(
                    f"unable to parse requirement: found '{op}', "
                    "expected: '=', '!=', '==', 'in', notin'"
                )
        if i < len(tokens):
            if peek() != ",":
                raise SelectorError(f"unable to parse requirement: found '{peek()}', expected: ','")
            i += 1
            if i == len(tokens):
                raise SelectorError("unable to parse requirement: found '', expected: identifier")
    return LabelSelector(tuple(reqs))


def selector_from_map(match_labels: Mapping[str, str] | None) -> LabelSelector:
    """Selector for a plain map such as a Service ``spec.selector``."""
    return LabelSelector(
        tuple(Requirement(k, "=", (v,)) for k, v in sorted((match_labels or {}).items()))
    )


_EXPR_OPS: dict[str, Operator] = {
    "In": "in",
    "NotIn": "notin",
    "Exists": "exists",
    "DoesNotExist": "!",
}


def selector_from_label_selector(obj: Mapping[str, Any] | None) -> LabelSelector:
    """Convert a ``metav1.LabelSelector`` (matchLabels + matchExpressions) to a selector."""
    if obj is None:
        return LabelSelector()
    reqs = list(selector_from_map(obj.get("matchLabels")).requirements)
    for expr in obj.get("matchExpressions") or []:
        op = _EXPR_OPS.get(str(expr.get("operator")))
        if op is None:
            raise SelectorError(f"{expr.get('operator')!r} is not a valid label selector operator")
        values = tuple(str(v) for v in expr.get("values") or [])
        if op in ("in", "notin") and not values:
            raise SelectorError("for 'in', 'notin' operators, values set can't be empty")
        if op in ("exists", "!") and values:
            raise SelectorError("values set must be empty for exists and does not exist")
        reqs.append(Requirement(str(expr.get("key")), op, tuple(sorted(set(values)))))
    return LabelSelector(tuple(reqs))


def selector_to_string(obj: Mapping[str, Any] | None) -> str:
    """Render a ``metav1.LabelSelector`` as the string form used by Scale ``status.selector``."""
    return str(selector_from_label_selector(obj))


@dataclass(frozen=True)
class FieldRequirement:
    """One term of a field selector."""

    field: str
    value: str
    negate: bool = False

    def matches(self, fields: Mapping[str, str]) -> bool:
        """Whether the object's selectable fields satisfy this term."""
        return (fields.get(self.field, "") == self.value) != self.negate


@dataclass(frozen=True)
class FieldSelector:
    """A conjunction of field terms."""

    requirements: tuple[FieldRequirement, ...] = ()

    def matches(self, fields: Mapping[str, str]) -> bool:
        """Whether every term holds."""
        return all(r.matches(fields) for r in self.requirements)

    def fields(self) -> set[str]:
        """Field names the selector refers to."""
        return {r.field for r in self.requirements}


def _unescape_field(value: str) -> str:
    return re.sub(r"\\(.)", r"\1", value)


def parse_field_selector(text: str | None, supported: Iterable[str] | None = None) -> FieldSelector:
    """Parse a ``fieldSelector`` string; reject fields outside ``supported`` like the server."""
    reqs: list[FieldRequirement] = []
    allowed = set(supported) if supported is not None else None
    for part in re.split(r"(?<!\\),", text or ""):
        if not part.strip():
            continue
        m = re.match(r"^\s*([^=!\s]+)\s*(==|!=|=)(.*)$", part)
        if m is None:
            raise SelectorError(f"invalid selector: '{text}'; can't understand '{part}'")
        field, op, value = m.group(1), m.group(2), _unescape_field(m.group(3))
        if allowed is not None and field not in allowed:
            raise SelectorError(f"field label not supported: {field}")
        reqs.append(FieldRequirement(field, value, negate=(op == "!=")))
    return FieldSelector(tuple(reqs))
