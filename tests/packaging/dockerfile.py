"""A small Dockerfile and .dockerignore reader for the packaging tests (no Docker engine here).

Handles parser directives, comments, line continuations (the ``escape`` directive's character,
``\\`` by default), JSON and shell forms; not heredocs (the Dockerfile uses none, and a test
says so if one appears).
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Instruction:
    """One instruction: keyword upper-cased, its flags (``--from=builder``) and arguments."""

    keyword: str
    flags: dict[str, str]
    args: str
    line: int

    def exec_form(self) -> list[str] | None:
        """The JSON (exec) form's list, or None for the shell form."""
        if self.args.startswith("["):
            value = json.loads(self.args)
            assert isinstance(value, list) and all(isinstance(v, str) for v in value)
            return value
        return None


@dataclass
class Stage:
    """Everything from one FROM to the next."""

    index: int
    image: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        """This stage's instructions with `keyword`."""
        return [i for i in self.instructions if i.keyword == keyword]


_FLAG = re.compile(r"--([a-z-]+)(?:=(\S*))?\s*")


def _split_flags(text: str) -> tuple[dict[str, str], str]:
    flags: dict[str, str] = {}
    while text.startswith("--"):
        m = _FLAG.match(text)
        if m is None:
            break
        flags[m.group(1)] = m.group(2) or ""
        text = text[m.end() :]
    return flags, text.strip()


def parse(text: str) -> list[Instruction]:
    """The instructions of a Dockerfile, continuation lines joined."""
    escape = "\\"
    lines = text.splitlines()
    # Parser directives: only at the very top, before any comment or instruction.
    for line in lines:
        m = re.match(r"#\s*([a-zA-Z]+)\s*=\s*(\S+)\s*$", line)
        if not m:
            break
        if m.group(1).lower() == "escape":
            escape = m.group(2)
    out: list[Instruction] = []
    buffer: list[str] = []
    start = 0
    for number, raw in enumerate(lines, 1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not buffer):
            continue  # comments (and blank lines) inside a continuation are skipped too
        if not buffer:
            start = number
        if stripped.endswith(escape):
            buffer.append(stripped[: -len(escape)].strip())
            continue
        buffer.append(stripped)
        joined = " ".join(part for part in buffer if part)
        buffer = []
        keyword, _, rest = joined.partition(" ")
        if "<<" in rest and keyword.upper() in ("RUN", "COPY"):
            raise ValueError(f"line {start}: heredocs are not supported by this parser")
        flags, args = _split_flags(rest.strip())
        out.append(Instruction(keyword.upper(), flags, args, start))
    if buffer:
        raise ValueError("the Dockerfile ends inside a line continuation")
    return out


def stages(instructions: list[Instruction]) -> list[Stage]:
    """Split into build stages."""
    result: list[Stage] = []
    for ins in instructions:
        if ins.keyword == "FROM":
            words = ins.args.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            result.append(Stage(len(result), words[0], name))
        elif result:
            result[-1].instructions.append(ins)
        elif ins.keyword != "ARG":
            raise ValueError(f"line {ins.line}: {ins.keyword} before the first FROM")
    return result


def shell_words(args: str) -> list[str]:
    """A shell-form argument string split into words (for looking at commands)."""
    return shlex.split(args, posix=True)


def labels(stage: Stage) -> dict[str, str]:
    """LABEL key=value pairs of a stage."""
    out: dict[str, str] = {}
    for ins in stage.all("LABEL"):
        for word in shell_words(ins.args):
            key, _, value = word.partition("=")
            out[key] = value
    return out


# --- .dockerignore ----------------------------------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """Docker's pattern syntax (Go filepath.Match plus ``**``) as a regex on a clean path."""
    pattern = pattern.strip("/")
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out + "$")


@dataclass
class DockerIgnore:
    """The rules of a .dockerignore: the last matching pattern decides (``!`` re-includes)."""

    rules: list[tuple[bool, re.Pattern[str]]]

    @classmethod
    def load(cls, path: Path) -> DockerIgnore:
        rules = []
        for line in path.read_text().splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            negate = line.startswith("!")
            rules.append((negate, _pattern_regex(line.lstrip("!").strip())))
        return cls(rules)

    def excluded(self, path: str) -> bool:
        """Whether `path` (relative to the context, ``/``-separated) is left out of the context.

        A pattern that matches a directory matches everything below it, as in Docker.
        """
        parts = path.strip("/").split("/")
        prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        result = False
        for negate, regex in self.rules:
            if any(regex.match(p) for p in prefixes):
                result = not negate
        return result
