"""Reading the config's YAML: bounded work, YAML 1.2 scalars, the line of every key and item.

One pass over libyaml's event stream (C parser; no recursion in Python) builds plain dicts and
lists and, beside them, the line each key and list item was written on. The limits are checked
as the events arrive, so no input makes this slow or large:

- at most ``MAX_BYTES`` of text, and no control characters (each reported at line:column);
- nesting at most ``MAX_DEPTH`` levels;
- aliases may add at most ``MAX_ALIAS_NODES`` nodes beyond those written (an alias bomb is
  refused at the alias that crosses it, before anything is expanded);
- one document.

Scalars resolve as YAML 1.2's core schema does (``yes``/``on`` are strings, ``010`` is 10, no
dates), as Kubernetes and the JSON schema read them. Keys are the text written (``1:`` and
``~:`` are the keys ``'1'`` and ``'~'``). Merge keys (``<<: *base``) work; a merged key is
located where its anchor wrote it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

MAX_BYTES = 1024 * 1024
MAX_DEPTH = 50
MAX_ALIAS_NODES = 100_000
_MAX_REPORTED_CHARS = 10

_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# YAML's printable set (1.2 §5.1): anything else may not appear in a file, even in a comment.
_NOT_PRINTABLE = re.compile(
    "[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
)
_CHAR_NAMES = {
    0x00: "NUL",
    0x07: "BEL",
    0x08: "backspace",
    0x0B: "vertical tab",
    0x0C: "form feed",
    0x1B: "ESC (a terminal colour code pasted in?)",
    0x7F: "DEL",
}

_NULL = frozenset(("", "~", "null", "Null", "NULL"))
_BOOL = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_INT = re.compile(r"[-+]?[0-9]+\Z")
_OCT = re.compile(r"0o[0-7]+\Z")
_HEX = re.compile(r"0x[0-9a-fA-F]+\Z")
_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?\Z")
_INF = re.compile(r"[-+]?\.(inf|Inf|INF)\Z")
_NAN = re.compile(r"\.(nan|NaN|NAN)\Z")
_MAX_DIGITS = 100
_STR_TAG = "tag:yaml.org,2002:str"
_KNOWN_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
    "tag:yaml.org,2002:map",
    "tag:yaml.org,2002:seq",
}


@dataclass(frozen=True)
class YamlProblem:
    """Something wrong in the YAML itself, at a 1-based line (and column where it helps)."""

    line: int | None
    message: str


class YamlError(Exception):
    """The text cannot be read as one YAML document within the limits."""

    def __init__(self, problems: list[YamlProblem]) -> None:
        self.problems = problems
        super().__init__("; ".join(p.message for p in problems))


@dataclass
class Document:
    """The data, where each key and item was written, and problems that do not stop reading."""

    data: Any
    # id(container) -> {key: line} for a dict, [line, ...] for a list.
    lines: dict[int, Any] = field(default_factory=dict)
    problems: list[YamlProblem] = field(default_factory=list)
    root_line: int = 1  # where the document's content starts

    def line_of(self, container: Any, part: str | int) -> int | None:
        """The line `part` (a key or an index) of `container` was written on."""
        where = self.lines.get(id(container))
        if isinstance(where, dict) and isinstance(part, str):
            return where.get(part)
        if isinstance(where, list) and isinstance(part, int) and 0 <= part < len(where):
            line: int = where[part]
            return line
        return None


def check_text(text: str) -> None:
    """YamlError when the text is too large or holds characters YAML forbids."""
    size = len(text.encode("utf-8", "surrogatepass")) if len(text) * 4 > MAX_BYTES else 0
    if len(text) > MAX_BYTES or size > MAX_BYTES:
        raise YamlError([YamlProblem(None, too_large(max(size, len(text))))])
    problems = []
    matches = list(_NOT_PRINTABLE.finditer(text))
    for m in matches[:_MAX_REPORTED_CHARS]:
        line = text.count("\n", 0, m.start()) + 1
        column = m.start() - (text.rfind("\n", 0, m.start()) + 1) + 1
        code = ord(m.group())
        name = _CHAR_NAMES.get(code, "control character")
        problems.append(
            YamlProblem(
                line,
                f"column {column}: character U+{code:04X} {name} is not allowed in YAML; remove it",
            )
        )
    if len(matches) > _MAX_REPORTED_CHARS:
        problems.append(
            YamlProblem(
                None,
                f"{len(matches) - _MAX_REPORTED_CHARS} more character(s) not allowed in YAML "
                "(only the first 10 are listed)",
            )
        )
    if problems:
        raise YamlError(problems)


def too_large(size: int) -> str:
    """The message for a file over the size limit."""
    return f"the file is {size} bytes; a config may be at most {MAX_BYTES} bytes (1 MiB)"


def read_yaml(text: str) -> Document:
    """Read one YAML document within the limits; YamlError if it cannot be read."""
    check_text(text)
    builder = _Builder()
    loader = _LOADER(text)
    try:
        while loader.check_event():
            builder.feed(loader.get_event())
    except yaml.MarkedYAMLError as exc:
        problems = [_syntax_problem(exc, text)]
        error_line = problems[0].line or 0
        quote = builder.multiline_quote
        if quote is not None and quote[1] >= error_line - 1:
            # A quote left open swallows the lines after it: the parser stumbles where it ends.
            start, end = quote
            problems.append(
                YamlProblem(
                    start,
                    f"a quoted string opens here and runs to line {end}: is its closing quote "
                    "missing?",
                )
            )
        raise YamlError(problems) from None
    except yaml.YAMLError as exc:
        raise YamlError([YamlProblem(None, f"not valid YAML: {exc}")]) from None
    finally:
        loader.dispose()
    return Document(builder.result, builder.lines, builder.problems, builder.root_line)


def _syntax_problem(exc: yaml.MarkedYAMLError, text: str) -> YamlProblem:
    last_line = text.count("\n") + (0 if text.endswith("\n") or not text else 1)
    mark = exc.problem_mark
    # An unterminated quote or bracket is found at the end of the file; where it opened is
    # what the reader needs.
    if exc.context_mark is not None and (mark is None or mark.line + 1 > last_line):
        mark = exc.context_mark
    line = min(mark.line + 1, max(last_line, 1)) if mark is not None else None
    what = exc.problem or "cannot be read"
    if exc.context and "quoted scalar" in exc.context and "end of stream" in what:
        what = "a quoted string opened here is never closed"
    elif exc.context:
        what += f" ({exc.context})"
    at = exc.problem_mark.index if exc.problem_mark is not None else -1
    if text[at : at + 1] == "\t":
        what += "; a tab: YAML indents with spaces only"
    column = f" at column {mark.column + 1}" if mark is not None else ""
    return YamlProblem(line, f"not valid YAML{column}: {what}")


class _Frame:
    __slots__ = (
        "anchor",
        "container",
        "key",
        "key_line",
        "lines",
        "merges",
        "own",
        "size",
        "start_line",
    )

    def __init__(self, container: Any, anchor: str | None, line: int) -> None:
        self.container = container
        self.start_line = line
        self.anchor = anchor
        self.size = 1
        self.lines: Any = {} if isinstance(container, dict) else []
        self.key: Any = _NO_KEY
        self.key_line = 0
        self.merges: list[tuple[Any, int]] = []
        self.own: set[str] = set()


_NODE_STARTS = (yaml.ScalarEvent, yaml.AliasEvent, yaml.SequenceStartEvent, yaml.MappingStartEvent)
_NO_KEY = object()
_BAD_KEY = object()
_MERGE = object()


class _Builder:
    """Turns the event stream into data plus lines, enforcing the limits as it goes."""

    def __init__(self) -> None:
        self.stack: list[_Frame] = []
        self.anchors: dict[str, tuple[Any, int]] = {}
        self.open_anchors: set[str] = set()
        self.lines: dict[int, Any] = {}
        self.problems: list[YamlProblem] = []
        self.result: Any = None
        self.documents = 0
        self.written = 0
        self.expanded = 0
        self.root_line = 1
        self.multiline_quote: tuple[int, int] | None = None

    def feed(self, event: Any) -> None:
        line = event.start_mark.line + 1
        if not self.stack and isinstance(event, _NODE_STARTS):
            self.root_line = line
        if isinstance(event, yaml.DocumentStartEvent):
            self.documents += 1
            if self.documents > 1:
                raise YamlError(
                    [YamlProblem(line, "a config is one YAML document; another starts here")]
                )
        elif isinstance(event, yaml.ScalarEvent):
            self.written += 1
            self._value(self._scalar(event, line), 1, line, event.anchor)
        elif isinstance(event, yaml.AliasEvent):
            self._alias(str(event.anchor), line)
        elif isinstance(event, yaml.SequenceStartEvent | yaml.MappingStartEvent):
            self.written += 1
            if len(self.stack) >= MAX_DEPTH:
                raise YamlError(
                    [YamlProblem(line, f"nested more than {MAX_DEPTH} levels deep; flatten it")]
                )
            self._tag(event.tag, line)
            container: Any = [] if isinstance(event, yaml.SequenceStartEvent) else {}
            if event.anchor:
                self.open_anchors.add(event.anchor)
            self.stack.append(_Frame(container, event.anchor, line))
        elif isinstance(event, yaml.SequenceEndEvent | yaml.MappingEndEvent):
            frame = self.stack.pop()
            self._merge(frame)
            self.lines[id(frame.container)] = frame.lines
            if frame.anchor:
                self.open_anchors.discard(frame.anchor)
            self._value(frame.container, frame.size, frame.start_line, frame.anchor)

    def _alias(self, name: str, line: int) -> None:
        if name in self.open_anchors:
            raise YamlError([YamlProblem(line, f"alias *{name} refers to itself (recursive)")])
        if name not in self.anchors:
            raise YamlError([YamlProblem(line, f"alias *{name} has no anchor &{name} before it")])
        value, size = self.anchors[name]
        self.expanded += size
        if self.expanded > MAX_ALIAS_NODES:
            raise YamlError(
                [
                    YamlProblem(
                        line,
                        f"aliases expand to more than {MAX_ALIAS_NODES} nodes (an alias bomb?); "
                        "write the values out or use `defaults:`",
                    )
                ]
            )
        self._value(value, size, line, None)

    def _value(self, value: Any, size: int, line: int, anchor: str | None) -> None:
        if anchor:
            self.anchors[anchor] = (value.text if isinstance(value, _KeyText) else value, size)
        if not self.stack:
            self.result = value
            return
        frame = self.stack[-1]
        frame.size += size
        container = frame.container
        if isinstance(container, list):
            container.append(value)
            frame.lines.append(line)
            return
        if frame.key is _NO_KEY:
            frame.key, frame.key_line = self._key(value, line), line
            return
        key, frame.key = frame.key, _NO_KEY
        if key is _MERGE:
            frame.merges.append((value, frame.key_line))
        elif key is _BAD_KEY:
            pass
        elif key in frame.own:
            self.problems.append(
                YamlProblem(
                    frame.key_line,
                    f"duplicate key {key!r} (first at line {frame.lines[key]})",
                )
            )
        else:
            frame.own.add(key)
            container[key] = value
            frame.lines[key] = frame.key_line

    def _key(self, value: Any, line: int) -> Any:
        if isinstance(value, _KeyText):
            return _MERGE if value.merge else value.text
        if isinstance(value, str):  # an alias to a string
            return value
        self.problems.append(
            YamlProblem(line, f"a key must be a plain string, got {_kind(value)}; it is ignored")
        )
        return _BAD_KEY

    def _merge(self, frame: _Frame) -> None:
        """Apply `<<:` merges: explicit keys win, then earlier merge sources over later ones."""
        for source, line in frame.merges:
            sources = source if isinstance(source, list) else [source]
            for item in sources:
                if not isinstance(item, dict):
                    self.problems.append(
                        YamlProblem(line, f"`<<` merges mappings only, got {_kind(item)}")
                    )
                    continue
                item_lines = self.lines.get(id(item), {})
                for key, value in item.items():
                    if key not in frame.container:
                        frame.container[key] = value
                        frame.lines[key] = item_lines.get(key, line)

    @property
    def _expecting_key(self) -> bool:
        return bool(
            self.stack
            and isinstance(self.stack[-1].container, dict)
            and self.stack[-1].key is _NO_KEY
        )

    def _scalar(self, event: Any, line: int) -> Any:
        text: str = event.value
        plain = event.style in (None, "")
        if event.style in ('"', "'") and event.end_mark.line + 1 > line:
            self.multiline_quote = (line, event.end_mark.line + 1)
        if self._expecting_key:
            return _KeyText(text, merge=plain and text == "<<" and event.tag in (None, "!"))
        tag = event.tag
        if tag in (None, "!") and not plain:
            return text
        if tag not in (None, "!"):
            self._tag(tag, line)
            if tag == _STR_TAG:
                return text
        return self._resolve(text, line)

    def _resolve(self, text: str, line: int) -> Any:
        if text in _NULL:
            return None
        if text in _BOOL:
            return _BOOL[text]
        if _INT.match(text) or _OCT.match(text) or _HEX.match(text):
            if len(text) > _MAX_DIGITS:
                # Python refuses to convert thousands of digits; the value is out of every
                # range anyway, and the field's own check says so.
                text = text[:_MAX_DIGITS]
            if text.startswith("0o"):
                return int(text[2:], 8)
            return int(text, 16) if text.startswith("0x") else int(text, 10)
        if _FLOAT.match(text):
            return float(text)
        if _INF.match(text):
            return -math.inf if text.startswith("-") else math.inf
        if _NAN.match(text):
            return math.nan
        return text

    def _tag(self, tag: str | None, line: int) -> None:
        if tag not in (None, "!") and tag not in _KNOWN_TAGS:
            raise YamlError(
                [YamlProblem(line, f"unsupported YAML tag {tag}; a config is plain YAML")]
            )


class _KeyText:
    """A scalar read where a key was expected: kept as written."""

    __slots__ = ("merge", "text")

    def __init__(self, text: str, merge: bool) -> None:
        self.text = text
        self.merge = merge


def _kind(value: object) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {value!r}"
