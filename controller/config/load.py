"""Loading a config file: YAML with line numbers, defaults inheritance, every problem at once.

A problem names the file and line, the rollout, the field path, the bad value and what was
expected, e.g.::

    zai-proxy.yaml:31: rollout 'zai-proxy': steps[2].weight: weights must increase strictly ...

Values inherited from ``defaults:`` are reported at the line in ``defaults:`` they came from.
"""

from __future__ import annotations

import copy
import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml as yaml_fast
from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

from controller.config.checks import Finding, Severity, check_config, check_rollouts
from controller.config.model import DEFAULTABLE, Config, Rollout
from controller.config.schema import allowed_keys

Loc = tuple[str | int, ...]


class _FastLoader(getattr(yaml_fast, "CSafeLoader", yaml_fast.SafeLoader)):  # type: ignore[misc]
    """PyYAML's C loader, refusing duplicate keys as ruamel (and YAML 1.2) does."""

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        keys = [self.construct_object(k, deep=deep) for k, _ in node.value]
        if len(keys) != len({repr(k) for k in keys}):
            raise yaml_fast.constructor.ConstructorError(
                None, None, "duplicate key", node.start_mark
            )
        return dict(super().construct_mapping(node, deep=deep))


_FAST_LOADER = _FastLoader
# Scalars that YAML 1.1 (PyYAML) and YAML 1.2 (ruamel) read differently: yes/no/on/off,
# 0-prefixed octals, sexagesimals. A file with any of them takes the slow, exact path.
_YAML11_ONLY = re.compile(
    r"(?im)[:\-\[{,]\s*(?:yes|no|on|off|y|n|0[0-7]+|[0-9]+:[0-5]?[0-9](?::[0-5]?[0-9])*)"
    r"\s*(?:[,}\]#]|$)"
)
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

    `replicas` also checks the plans of rollouts that set no `replicas`, for that N.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError([Problem(str(p), None, None, "", f"cannot read file: {reason}")]) from exc
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1
        raise ConfigError(
            [Problem(str(p), line, None, "", f"not UTF-8 text: byte {exc.object[exc.start]:#04x}")]
        ) from exc
    return load_config_text(text, str(p), replicas)


def load_config_text(
    text: str, filename: str = "<config>", replicas: int | None = None
) -> LoadedConfig:
    """Validate config text; `filename` is only used in messages."""
    fast = _load_fast(text, filename, replicas)
    if fast is not None:
        return fast
    yaml = YAML(typ="rt")
    try:
        raw = yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise ConfigError(
            [Problem(filename, line, None, "", f"not valid YAML: {exc.problem or exc}")]
        ) from exc
    if raw is None:
        raw = CommentedMap()
    if not isinstance(raw, Mapping):
        raise ConfigError(
            [Problem(filename, 1, None, "", f"expected a mapping at the top, got {_kind(raw)}")]
        )
    locator = _Locator(filename, raw)
    merged = _merge_defaults(_plain(raw))
    try:
        # Keys as written in YAML only: `max_surge` is a typo there, not another spelling.
        config: Config | None = Config.model_validate(merged, by_alias=True, by_name=False)
    except ValidationError as exc:
        config = None
        type_errors = exc.errors()
    if config is not None:
        findings = check_config(config, replicas)
        problems = _dedupe(locator.from_finding(f) for f in findings)
    else:
        # Judge the rollouts that are well-typed too, so one run reports every problem.
        broken = {
            e["loc"][1] for e in type_errors if len(e["loc"]) > 1 and e["loc"][0] == "rollouts"
        }
        raw_rollouts = merged.get("rollouts")
        valid: list[tuple[int, Rollout]] = []
        removed: list[Loc] = []
        if isinstance(raw_rollouts, list):
            for i, r in enumerate(raw_rollouts):
                mine = [
                    e["loc"][2:]
                    for e in type_errors
                    if i in broken and e["loc"][:2] == ("rollouts", i)
                ]
                repaired = _without_bad_values(r, mine) if i in broken else r
                if repaired is None:
                    continue
                try:
                    valid.append(
                        (i, Rollout.model_validate(repaired, by_alias=True, by_name=False))
                    )
                except ValidationError:
                    continue
                removed.extend(("rollouts", i, *loc) for loc in mine)
        findings = [
            f
            for f in check_rollouts(valid, replicas)
            if not any(f.loc[: len(loc)] == loc for loc in removed)
        ]
        problems = _dedupe(
            [locator.from_pydantic(err) for err in type_errors]
            + [locator.from_finding(f) for f in findings]
        )
    errors = [p for p in problems if p.severity is Severity.ERROR]
    if errors or config is None:
        raise ConfigError(errors + [p for p in problems if p.severity is Severity.WARNING])
    return LoadedConfig(config, filename, sorted(problems, key=lambda p: p.line or 0))


def _load_fast(text: str, filename: str, replicas: int | None) -> LoadedConfig | None:
    """The common case, quickly: a valid file (warnings allowed).

    ruamel's round-trip parser keeps the line numbers errors are reported with, but takes
    seconds for a config of hundreds of rollouts. PyYAML's C parser gives the document and its
    nodes (with their lines, for warnings) in a fraction of that. A file with errors — or with
    anything the two parsers could read differently — goes the slow, exact way.
    """
    if _YAML11_ONLY.search(text):
        return None
    loader = _FAST_LOADER(text)
    try:
        root = loader.get_single_node()
        raw = loader.construct_document(root) if root is not None else None
    except yaml_fast.YAMLError:
        return None
    finally:
        loader.dispose()
    if not isinstance(raw, dict):
        return None
    try:
        config = Config.model_validate(_merge_defaults(raw), by_alias=True, by_name=False)
    except (ValidationError, TypeError, ValueError):
        return None
    findings = check_config(config, replicas)
    if any(f.severity is Severity.ERROR for f in findings):
        return None
    locator = _NodeLocator(filename, raw, root)
    warnings = sorted(
        _dedupe(locator.from_finding(f) for f in findings), key=lambda p: (p.line or 0, p.path)
    )
    return LoadedConfig(config, filename, warnings)


def _without_bad_values(rollout: Any, locs: list[Loc]) -> Any:
    """A copy of a rollout with each badly typed value removed (so its default applies).

    Lets the semantic checks judge the rest of a rollout that has a typo in it. None when a
    bad value cannot be removed (a required key missing or a broken list item).
    """
    data = copy.deepcopy(rollout)
    for loc in locs:
        parts = [p for p in loc if not (isinstance(p, str) and "[" in p)]
        node = data
        for part in parts[:-1]:
            try:
                node = node[part]
            except (KeyError, IndexError, TypeError):
                return None
        if not parts or not isinstance(node, dict) or parts[-1] not in node:
            return None
        del node[parts[-1]]
    return data


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


def _plain(value: Any) -> Any:
    """ruamel's commented containers -> plain dicts/lists (pydantic wants plain data)."""
    if isinstance(value, Mapping):
        return {str(k) if not isinstance(k, str) else k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


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
    "^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$": "a Kubernetes namespace (lower-case letters, digits "
    "and '-', starting and ending alphanumeric, at most 63)",
    "^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$": "a Kubernetes object name (lower-case letters, "
    "digits, '-' and '.', starting and ending alphanumeric)",
    "^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$": "a label value (letters, digits, "
    "'-', '_' and '.', at most 63, starting and ending alphanumeric)",
}


def _key_line(node: CommentedMap, key: str) -> int | None:
    """The line of `key` in a mapping, looking through YAML merge keys (``<<: *base``)."""
    if key in node.lc.data:
        return int(node.lc.key(key)[0]) + 1
    for item in getattr(node, "merge", None) or []:
        source = item[1] if isinstance(item, tuple) else item
        if isinstance(source, CommentedMap) and key in source:
            return _key_line(source, key)
    return None


class _Locator:
    """Maps key paths in the validated (merged) data back to lines of the original file."""

    def __init__(self, filename: str, raw: Mapping[str, Any]) -> None:
        self.filename = filename
        self.raw = raw

    def _node_line(self, loc: Loc) -> tuple[int | None, bool, bool]:
        """Line of the deepest node on `loc` present in the file.

        Also: whether that is the node itself, and whether the path below a rollout goes through
        a list the file gives (lists replace, so nothing under one comes from `defaults:`).
        """
        node: Any = self.raw
        line: int | None = 1
        in_list = False
        for depth, part in enumerate(loc):
            if isinstance(node, CommentedMap) and isinstance(part, str) and part in node:
                line = _key_line(node, part) or line
                node = node[part]
            elif isinstance(node, CommentedSeq) and isinstance(part, int) and part < len(node):
                line = node.lc.item(part)[0] + 1
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


class _NodeLocator(_Locator):
    """The same line lookups over PyYAML's node tree (the fast path's)."""

    def __init__(self, filename: str, raw: Mapping[str, Any], root: Any) -> None:
        super().__init__(filename, raw)
        self.root = root

    def _node_line(self, loc: Loc) -> tuple[int | None, bool, bool]:
        node: Any = self.root
        line: int | None = 1
        in_list = False
        for depth, part in enumerate(loc):
            child = None
            if isinstance(node, yaml_fast.MappingNode) and isinstance(part, str):
                for key, value in node.value:
                    if getattr(key, "value", None) == part:
                        line, child = key.start_mark.line + 1, value
                        break
            elif (
                isinstance(node, yaml_fast.SequenceNode)
                and isinstance(part, int)
                and part < len(node.value)
            ):
                child = node.value[part]
                line = child.start_mark.line + 1
            if child is None:
                through_list = depth >= 2 and isinstance(node, yaml_fast.SequenceNode)
                return line, False, in_list or through_list
            node = child
            in_list = in_list or (depth >= 2 and isinstance(part, int))
        return line, True, in_list
