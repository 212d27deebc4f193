"""The corpus of bad config files: hand-written ones and generated ones, with what must be said.

Hand-written files live in tests/data/bad-configs. A line's ``#! PATH`` comment says a problem
is reported at that line for that field path (``;`` between several, ``-`` for a problem with no
field path, such as a YAML syntax error); the file must report exactly those errors. Generated
cases (bombs, deep nesting, control bytes, huge and broken files) say what they expect in code.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from pathlib import Path

from controller.core.config.yamlread import MAX_BYTES, MAX_DEPTH

DATA = Path(__file__).parents[1] / "data" / "bad-configs"
MINIMAL = (Path(__file__).parents[2] / "config" / "minimal.yaml").read_text()
EXAMPLE = (Path(__file__).parents[2] / "config" / "zai-proxy.yaml").read_text()
_MARK = re.compile(r"#! (.*)$")


@dataclass(frozen=True)
class Expected:
    """A problem that must be reported: at `line` (None: no line), for `path`, saying `text`."""

    line: int | None
    path: str | None = None  # None: any path
    text: str = ""


@dataclass
class Case:
    """One bad input and every error it must produce (`exact`: and no other error).

    No expectations at all: the input may even be valid; it must only be answered, quickly.
    """

    name: str
    content: bytes
    expected: list[Expected] = field(default_factory=list)
    exact: bool = True


def hand_written() -> list[Case]:
    """The files in tests/data/bad-configs, expectations read from their ``#!`` comments."""
    cases = []
    for path in sorted(DATA.glob("*.yaml")):
        text = path.read_text(encoding="utf-8")
        expected = []
        for number, line in enumerate(text.splitlines(), start=1):
            mark = _MARK.search(line)
            if mark:
                for part in mark.group(1).split(";"):
                    field_path = part.strip()
                    expected.append(Expected(number, "" if field_path == "-" else field_path))
        assert expected, f"{path.name} says nothing about what it expects"
        cases.append(Case(path.stem, text.encode("utf-8"), expected))
    return cases


_CONTROL = [c for c in range(0x20) if c not in (0x09, 0x0A, 0x0D)] + [0x7F]


def generated() -> list[Case]:
    """Inputs no one writes by hand but a broken pipeline, a paste or an attacker produces."""
    out: list[Case] = []
    service_line = MINIMAL.splitlines().index("    service: web") + 1
    for code in _CONTROL:
        text = MINIMAL.replace("    service: web", f"    service: w{chr(code)}eb")
        out.append(
            Case(
                f"control-U+{code:04X}",
                text.encode(),
                [Expected(service_line, "", f"column 15: character U+{code:04X}")],
            )
        )
    out.append(
        Case(
            "ansi-colour-pasted",
            MINIMAL.replace("web-v2", "\x1b[32mweb-v2\x1b[0m").encode(),
            [Expected(7, "", "column 26: character U+001B ESC"), Expected(7, "", "column 37")],
        )
    )
    out.append(
        Case("c1-control", MINIMAL.replace("web-v2", "web\x85-v2\x9b").encode(), [Expected(7, "")])
    )
    lol = '"lol"'
    bomb = f"a: &a [{','.join([lol] * 9)}]\n" + "".join(
        f"{n}: &{n} [{','.join([f'*{p}'] * 9)}]\n"
        for p, n in zip("abcdefgh", "bcdefghi", strict=True)
    )
    out.append(Case("alias-bomb-lists", bomb.encode(), [Expected(6, "", "aliases expand")]))
    mapping_bomb = "a: &a {x: 1, y: 2, z: 3, w: 4}\n" + "".join(
        f"{n}: &{n} {{{', '.join(f'k{i}: *{p}' for i in range(10))}}}\n"
        for p, n in zip("abcdefg", "bcdefgh", strict=True)
    )
    out.append(Case("alias-bomb-maps", mapping_bomb.encode(), [Expected(5, "", "aliases expand")]))
    merge_bomb = "a: &a {x: 1}\n" + "".join(
        f"{n}: &{n} {{<<: [{', '.join([f'*{p}'] * 10)}], {n}: 1}}\n"
        for p, n in zip("abcdefg", "bcdefgh", strict=True)
    )
    out.append(Case("alias-bomb-merge-keys", merge_bomb.encode(), [Expected(None)], exact=False))
    for depth in (MAX_DEPTH + 1, 300, 100_000):
        flow = "rollouts: " + "[" * depth + "]" * depth + "\n"
        out.append(Case(f"nested-flow-{depth}", flow.encode(), [Expected(1, "", "nested more")]))
    block = "rollouts:\n" + "".join("  " * i + "- \n" for i in range(1, 200))
    out.append(Case("nested-block-200", block.encode(), [Expected(None, "", "nested more")]))
    deep_map = "".join("  " * i + f"k{i}:\n" for i in range(120))
    out.append(Case("nested-map-120", deep_map.encode(), [Expected(None, "", "nested more")]))
    out.append(Case("empty", b"", [Expected(1, "", "the file is empty")]))
    out.append(
        Case("only-comments", b"# nothing\n# here\n", [Expected(1, "", "the file is empty")])
    )
    out.append(Case("only-document-marker", b"---\n...\n", [Expected(1, "", "the file is empty")]))
    out.append(
        Case("no-rollouts-key", b"prometheus: {}\n", [Expected(1, "rollouts", "no `rollouts:`")])
    )
    out.append(Case("rollouts-null", b"rollouts:\n", [Expected(1, "rollouts")]))
    out.append(
        Case(
            "not-utf8", MINIMAL.replace("web-v2", "web-v\xe9").encode("latin-1"), [Expected(7, "")]
        )
    )
    out.append(Case("utf16", MINIMAL.encode("utf-16"), [Expected(1, "", "not UTF-8")]))
    big = ("rollouts: []\n" + "#" * 120 + "\n") * (2 * MAX_BYTES // 121)
    out.append(Case("two-mebibytes", big.encode(), [Expected(None, "", "at most 1048576 bytes")]))
    out.append(
        Case("five-megabytes", (big * 3).encode(), [Expected(None, "", "at most 1048576 bytes")])
    )
    filler = "".join(
        MINIMAL.split("rollouts:\n", 1)[1]
        .replace(": web", f": web{i}")
        .replace("web-v2", f"web{i}-v2")
        for i in range(2000)
    )
    near_limit = "rollouts:\n" + filler + "  - name: last\n    service: last\n    bogus: 1\n"
    lines = near_limit.count("\n")
    out.append(
        Case(
            "near-the-limit-one-error-at-the-end",
            near_limit.encode(),
            [
                Expected(lines, "bogus", "unknown key"),
                Expected(lines - 2, "stable"),
                Expected(lines - 2, "canary"),
                Expected(lines - 2, "steps"),
            ],
        )
    )
    rng = random.Random(20261202)
    for i in range(4):
        junk = bytes(rng.randrange(256) for _ in range(rng.randrange(10, 5000)))
        out.append(Case(f"random-bytes-{i}", junk, [Expected(None)], exact=False))
    for i in range(3):
        junk = "".join(rng.choice("{}[]:-,'\"&*!|>#%@` \n\tabc") for _ in range(400))
        out.append(Case(f"yaml-punctuation-{i}", junk.encode(), [Expected(None)], exact=False))
    for cut in (0.2, 0.5, 0.8, 0.95):
        text = EXAMPLE[: int(len(EXAMPLE) * cut)]
        # Some cuts still leave a valid file: what matters is an answer, never a crash.
        out.append(Case(f"truncated-example-{int(cut * 100)}", text.encode(), [], exact=False))
    return out


def all_cases() -> list[Case]:
    """Every bad input of the corpus."""
    return hand_written() + generated()
