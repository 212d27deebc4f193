"""Loading a config file: YAML with line numbers, defaults inheritance, every problem at once.

A problem names the file and line, the rollout, the field path, the bad value and what was
expected, e.g.::

    zai-proxy.yaml:31: rollout 'zai-proxy': steps[2].weight: weights must increase strictly ...

Values inherited from ``defaults:`` are reported at the line in ``defaults:`` they came from.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from controller.core.config import model
from controller.core.config.checks import Finding, Severity, check_config, check_rollouts
from controller.core.config.model import DEFAULTABLE, Config, Rollout
from controller.core.config.repair import caused_by_repair, clean_loc, repair_rollout
from controller.core.config.schema import allowed_keys
from controller.core.config.yamlread import MAX_BYTES, Document, YamlError, read_yaml, too_large

Loc = tuple[str | int, ...]

NONE_HINT = "write `rollouts: []` to run with none"
INHERITED = " (inherited from defaults)"
_DEFAULTABLE_KEYS = {
    "".join(w.capitalize() if i else w for i, w in enumerate(k.split("_"))) for k in DEFAULTABLE
}


@dataclass(frozen=True)
class Problem:
    """One thing wrong (or worth a warning) in a config file."""

    file: str
    line: int | None
    rollout: str | None
    path: str
    message: str
    severity: Severity = Severity.ERROR

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        parts = [where]
        if self.rollout:
            parts.append(f"rollout {self.rollout!r}")
        if self.path:
            parts.append(self.path)
        prefix = "warning: " if self.severity is Severity.WARNING else ""
        return f"{': '.join(parts)}: {prefix}{self.message}"


class ConfigError(Exception):
    """The file cannot be used; `problems` lists every reason."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = sorted(
            problems, key=lambda p: (p.severity != Severity.ERROR, p.file, p.line or 0)
        )
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass(frozen=True)
class LoadedConfig:
    """A valid config, the warnings it produced, and where it came from."""

    config: Config
    source: str
    warnings: list[Problem] = field(default_factory=list)


def load_config(path: str | Path, replicas: int | None = None) -> LoadedConfig:
    """Read and validate a config file; ConfigError with every problem if it is not valid.

    `replicas` also checks the plans of rollouts that set no `replicas`, for that N. Nothing
    but ConfigError escapes, whatever the file holds.
    """
    p = Path(path)
    try:
        with p.open("rb") as handle:
            # Bounded: a device, a pipe or a huge file is not read past the limit.
            data = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError([Problem(str(p), None, None, "", f"cannot read file: {reason}")]) from exc
    if len(data) > MAX_BYTES:
        size = _file_size(p)
        message = (
            too_large(size)
            if size > MAX_BYTES
            else too_large(len(data)).replace(f"is {len(data)} bytes", "is larger than that")
        )
        raise ConfigError([Problem(str(p), None, None, "", message)])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(
            [Problem(str(p), line, None, "", f"not UTF-8 text: byte {data[exc.start]:#04x}")]
        ) from exc
    return load_config_text(text, str(p), replicas)


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def load_config_text(
    text: str, filename: str = "<config>", replicas: int | None = None
) -> LoadedConfig:
    """Validate config text; `filename` is only used in messages. Only ConfigError escapes."""
    try:
        return _load_text(text, filename, replicas)
    except ConfigError:
        raise
    except Exception as exc:  # the contract: a config or its problems, never a crash
        raise ConfigError(
            [
                Problem(
                    filename,
                    None,
                    None,
                    "",
                    f"cannot be checked: {type(exc).__name__}: {exc} (a bug in ptc: please "
                    "report it with the file)",
                )
            ]
        ) from exc


def _load_text(text: str, filename: str, replicas: int | None) -> LoadedConfig:
    try:
        doc = read_yaml(text)
    except YamlError as exc:
        problems = [Problem(filename, p.line, None, "", p.message) for p in exc.problems]
        raise ConfigError(problems) from None
    read_problems = [Problem(filename, p.line, None, "", p.message) for p in doc.problems]
    raw = doc.data
    if raw is None:
        raise ConfigError(
            [
                *read_problems,
                Problem(filename, 1, None, "", f"the file is empty: no rollouts ({NONE_HINT})"),
            ]
        )
    if not isinstance(raw, dict):
        raise ConfigError(
            [
                Problem(
                    filename,
                    doc.root_line,
                    None,
                    "",
                    f"expected a mapping at the top, got {_kind(raw)}",
                )
            ]
        )
    locator = _Locator(filename, doc)
    merged = _merge_defaults(raw)
    try:
        # Keys as written in YAML only: `max_surge` is a typo there, not another spelling.
        config: Config | None = Config.model_validate(merged, by_alias=True, by_name=False)
    except ValidationError as exc:
        config = None
        type_errors = exc.errors()
    if config is not None:
        findings = check_config(config, replicas)
        problems = _dedupe([*read_problems, *(locator.from_finding(f) for f in findings)])
    else:
        findings = _judge_the_rest(merged, type_errors, replicas)
        problems = _dedupe(
            [*read_problems]
            + [locator.from_pydantic(err) for err in type_errors]
            + [locator.from_finding(f) for f in findings]
        )
    errors = [p for p in problems if p.severity is Severity.ERROR]
    if errors or config is None:
        raise ConfigError(errors + [p for p in problems if p.severity is Severity.WARNING])
    return LoadedConfig(config, filename, sorted(problems, key=lambda p: (p.line or 0, p.path)))


def _judge_the_rest(
    merged: dict[str, Any], type_errors: Sequence[Mapping[str, Any]], replicas: int | None
) -> list[Finding]:
    """Semantic findings of every rollout, badly typed ones repaired first (see repair)."""
    raw_rollouts = merged.get("rollouts")
    if not isinstance(raw_rollouts, list):
        return []
    mine: dict[int, list[tuple[Loc, str]]] = {}
    for e in type_errors:
        loc = clean_loc(e["loc"])
        if len(loc) > 1 and loc[0] == "rollouts" and isinstance(loc[1], int):
            mine.setdefault(loc[1], []).append((loc[2:], str(e["type"])))
    valid: list[tuple[int, Rollout]] = []
    repaired: dict[int, list[Loc]] = {}
    for i, r in enumerate(raw_rollouts):
        if i not in mine:
            with contextlib.suppress(ValidationError):
                valid.append((i, Rollout.model_validate(r, by_alias=True, by_name=False)))
            continue
        fixed = repair_rollout(r, mine[i])
        if fixed is not None:
            valid.append((i, fixed.rollout))
            repaired[i] = fixed.repaired
    return [
        f
        for f in check_rollouts(valid, replicas, skip_plan=set(repaired))
        if not (
            len(f.loc) > 2
            and isinstance(f.loc[1], int)
            and f.loc[1] in repaired
            and caused_by_repair(f.loc[2:], repaired[f.loc[1]])
        )
    ]


def _dedupe(problems: Any) -> list[Problem]:
    seen: set[tuple[int | None, str, str]] = set()
    out: list[Problem] = []
    for p in problems:
        # An error in `defaults:` shows up once per inheriting rollout too (and once for
        # `defaults:` itself if it is a type error): report it once, at its line.
        path = p.path.removeprefix("defaults.")
        key = (p.line, path, p.message.removesuffix(INHERITED))
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


def _kind(value: object) -> str:
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing"
    return f"{type(value).__name__} {value!r}"


def _deep_merge(base: Any, override: Any) -> Any:
    """Maps merge key by key; anything else (lists included) is replaced by the override."""
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for k, v in override.items():
            out[k] = _deep_merge(base[k], v) if k in base else v
        return out
    return override


def _merge_defaults(data: dict[str, Any]) -> dict[str, Any]:
    defaults = data.get("defaults")
    rollouts = data.get("rollouts")
    if not isinstance(defaults, dict) or not isinstance(rollouts, list):
        return data
    inheritable = {k: v for k, v in defaults.items() if k in _DEFAULTABLE_KEYS}
    merged = []
    for r in rollouts:
        if isinstance(r, dict):
            merged.append(_deep_merge(copy.deepcopy(inheritable), r))
        else:
            merged.append(r)
    return {**data, "rollouts": merged}


def _fmt_path(loc: Loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_PATTERN_HELP = {
    model.DNS_LABEL: "a Kubernetes namespace: a DNS-1123 label (lower-case letters, digits and "
    "'-', starting and ending alphanumeric, at most 63)",
    model.DNS_1035_LABEL: "a Kubernetes Service name: a DNS-1035 label (lower-case letters, "
    "digits and '-', starting with a letter, ending alphanumeric, at most 63)",
    model.DNS_SUBDOMAIN: "a Kubernetes object name: a DNS-1123 subdomain (dot-separated "
    "labels of lower-case letters, digits and '-', each starting and ending alphanumeric)",
    model.LABEL_VALUE: "a label value (letters, digits, '-', '_' and '.', at most 63, starting "
    "and ending alphanumeric)",
    model.METRIC_NAME: "a Prometheus metric name (letters, digits, '_' and ':', not starting "
    "with a digit)",
    model.PROM_LABEL: "a Prometheus label name (letters, digits and '_', not starting with a "
    "digit)",
    "^/": "a path starting with '/'",
}


class _Locator:
    """Maps key paths in the validated (merged) data back to lines of the original file."""

    def __init__(self, filename: str, doc: Document) -> None:
        self.filename = filename
        self.doc = doc
        self.raw: dict[str, Any] = doc.data

    def _node_line(self, loc: Loc) -> tuple[int | None, bool, bool]:
        """Line of the deepest node on `loc` present in the file.

        Also: whether that is the node itself, and whether the path below a rollout goes through
        a list the file gives (lists replace, so nothing under one comes from `defaults:`).
        """
        node: Any = self.raw
        line: int | None = 1
        in_list = False
        for depth, part in enumerate(loc):
            here = self.doc.line_of(node, part)  # None when `part` is not in the file
            if here is not None:
                line = here
                node = node[part]
            else:
                return line, False, in_list or (depth >= 2 and isinstance(node, list))
            in_list = in_list or (depth >= 2 and isinstance(part, int))
        return line, True, in_list

    def line_for(self, loc: Loc) -> tuple[int | None, str]:
        """The line for `loc`, following inheritance from `defaults:`; and a note if inherited."""
        line, exact, in_list = self._node_line(loc)
        if exact or in_list or len(loc) < 3 or loc[0] != "rollouts":
            return line, ""
        d_line, d_exact, _ = self._node_line(("defaults", *loc[2:]))
        if d_exact:
            return d_line, INHERITED
        return line, ""

    def rollout_name(self, loc: Loc) -> str | None:
        if len(loc) >= 2 and loc[0] == "rollouts" and isinstance(loc[1], int):
            rollouts = self.raw.get("rollouts")
            if isinstance(rollouts, list) and loc[1] < len(rollouts):
                r = rollouts[loc[1]]
                if isinstance(r, Mapping) and isinstance(r.get("name"), str):
                    return str(r["name"])
                return f"#{loc[1] + 1}"
        return None

    def _rel(self, loc: Loc) -> Loc:
        return loc[2:] if self.rollout_name(loc) is not None else loc

    def from_finding(self, f: Finding) -> Problem:
        line, note = self.line_for(f.loc)
        return Problem(
            self.filename,
            line,
            self.rollout_name(f.loc),
            _fmt_path(self._rel(f.loc)),
            f.message + note,
            f.severity,
        )

    def from_pydantic(self, err: Mapping[str, Any]) -> Problem:
        loc: Loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and "[" in p))
        kind = err["type"]
        value = err.get("input")
        if kind == "extra_forbidden":
            key = str(loc[-1])
            options = allowed_keys(loc[:-1])
            hint = difflib.get_close_matches(key, options, n=1, cutoff=0.6)
            message = f"unknown key {key!r}"
            if hint:
                message += f"; did you mean {hint[0]!r}?"
            elif options:
                message += f"; expected one of: {', '.join(sorted(options))}"
        elif kind == "missing" and loc == ("rollouts",):
            message = f"no `rollouts:` in the file ({NONE_HINT})"
        elif kind == "missing":
            message = "required key is missing"
        elif kind == "string_pattern_mismatch":
            pattern = err.get("ctx", {}).get("pattern", "")
            expected = _PATTERN_HELP.get(pattern, f"a string matching {pattern}")
            message = f"expected {expected}, got {_short(value)}"
        elif kind in ("model_type", "dict_type"):
            message = f"expected a mapping, got {_kind(value)}"
        elif kind == "too_short":
            message = (
                f"expected at least {err.get('ctx', {}).get('min_length', 1)} item(s), got none"
            )
        elif kind == "list_type":
            message = f"expected a list, got {_kind(value)}"
        else:
            text = str(err["msg"])
            text = text.removeprefix("Value error, ")
            message = text[0].lower() + text[1:] if text else kind
            if "got" not in message:
                message += f", got {_short(value)}"
        line, note = self.line_for(loc)
        return Problem(
            self.filename,
            line,
            self.rollout_name(loc),
            _fmt_path(self._rel(loc)),
            message + note,
        )
