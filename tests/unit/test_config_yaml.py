"""Reading the config's YAML: bounded work, YAML 1.2 scalars, lines, every reader problem."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from controller.core.config import ConfigError, load_config, load_config_text
from controller.core.config.yamlread import MAX_ALIAS_NODES, MAX_BYTES, MAX_DEPTH, read_yaml

ROLLOUT = (
    "rollouts:\n"
    "  - name: web\n"
    "    service: web\n"
    "    stable: {deployment: web}\n"
    "    canary: {deployment: web-v2, version: v2}\n"
    "    steps: [{weight: 50}]\n"
)

ALIAS_BOMB = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{name}: &{name} [{','.join([f'*{prev}'] * 9)}]\n"
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True)
)


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config_text(text, "f.yaml")
    return [str(p) for p in info.value.problems]


def test_yaml_12_core_scalars() -> None:
    doc = read_yaml("a: yes\nb: on\nc: 010\nd: 0o10\ne: 0x1f\nf: ~\ng: 2024-01-01\nh: 1.5\n")
    assert doc.data == {
        "a": "yes",
        "b": "on",
        "c": 10,
        "d": 8,
        "e": 31,
        "f": None,
        "g": "2024-01-01",
        "h": 1.5,
    }


def test_keys_are_the_text_written_and_located() -> None:
    text = ROLLOUT + "    1: x\n    ~: y\n"
    assert problems(text) == [
        "f.yaml:7: rollout 'web': 1: unknown key '1'; expected one of: " + KEYS,
        "f.yaml:8: rollout 'web': ~: unknown key '~'; expected one of: " + KEYS,
    ]


KEYS = (
    "alerts, analysis, canary, flip, maxSurge, maxUnavailable, name, namespace, preflight, "
    "replicas, retention, rollback, service, sharedSelector, shifting, stable, steps, "
    "versionLabel, weightTolerance"
)


def test_alias_bomb_is_refused_at_once() -> None:
    started = time.perf_counter()
    assert problems(ALIAS_BOMB) == [
        f"f.yaml:6: aliases expand to more than {MAX_ALIAS_NODES} nodes (an alias bomb?); write "
        "the values out or use `defaults:`"
    ]
    assert time.perf_counter() - started < 3.0  # measured: well under 0.01 s


def test_reasonable_aliases_still_work() -> None:
    text = "base: &steps [{weight: 50}]\n" + ROLLOUT.replace("[{weight: 50}]", "*steps")
    assert problems(text)[0].startswith("f.yaml:1: base: unknown key 'base'")
    assert len(problems(text)) == 1


def test_recursive_alias() -> None:
    assert problems("a: &a [1, *a]\n") == ["f.yaml:1: alias *a refers to itself (recursive)"]


@pytest.mark.parametrize(
    "text",
    ["[" * 10_000 + "]" * 10_000, "a:\n" + "".join(" " * i + "- \n" for i in range(1, 400))],
    ids=["flow", "block"],
)
def test_deep_nesting_is_refused(text: str) -> None:
    (only,) = problems(text)
    assert only.endswith(f"nested more than {MAX_DEPTH} levels deep; flatten it")


@pytest.mark.parametrize(
    ("char", "name"),
    [("\x1b", "ESC (a terminal colour code pasted in?)"), ("\x00", "NUL"), ("\x0c", "form feed")],
)
def test_control_characters_at_line_and_column(char: str, name: str) -> None:
    text = ROLLOUT.replace("service: web", f"service: {char}web")
    assert problems(text) == [
        f"f.yaml:3: column 14: character U+{ord(char):04X} {name} is not allowed in YAML; remove it"
    ]


def test_many_control_characters_are_summed_up() -> None:
    found = problems("a: " + "\x07" * 30 + "\n")
    assert len(found) == 11
    assert (
        found[0]
        == "f.yaml: 20 more character(s) not allowed in YAML (only the first 10 are listed)"
    )


def test_size_limit_text_and_file(tmp_path: Path) -> None:
    big = ROLLOUT + "#" * MAX_BYTES + "\n"
    started = time.perf_counter()
    assert problems(big) == [
        f"f.yaml: the file is {len(big)} bytes; a config may be at most {MAX_BYTES} bytes (1 MiB)"
    ]
    path = tmp_path / "big.yaml"
    path.write_text(big * 5)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "a config may be at most 1048576 bytes" in str(info.value)
    assert time.perf_counter() - started < 3.0  # measured: well under 0.01 s


def test_unterminated_quote_is_reported_where_it_opens() -> None:
    text = ROLLOUT.replace("service: web", 'service: "web') + "\n\n"
    assert problems(text) == [
        "f.yaml:3: not valid YAML at column 14: a quoted string opened here is never closed"
    ]


def test_duplicate_keys_are_reported_and_the_rest_judged() -> None:
    text = ROLLOUT + "    service: api\n    replicas: 0\n"
    assert problems(text) == [
        "f.yaml:7: duplicate key 'service' (first at line 3)",
        "f.yaml:8: rollout 'web': replicas: input should be greater than or equal to 1, got 0",
    ]


def test_second_document_and_tags() -> None:
    assert problems("rollouts: []\n---\nrollouts: []\n") == [
        "f.yaml:2: a config is one YAML document; another starts here"
    ]
    assert problems("rollouts: !!python/object:os.system []\n") == [
        "f.yaml:1: unsupported YAML tag tag:yaml.org,2002:python/object:os.system; a config is "
        "plain YAML"
    ]


def test_huge_numbers_do_not_crash() -> None:
    text = ROLLOUT + "    replicas: " + "9" * 5000 + "\n"
    assert problems(text)[0].startswith(
        "f.yaml:7: rollout 'web': replicas: input should be less than"
    )


def test_merge_key_sources_and_overrides() -> None:
    doc = read_yaml("a: &x {p: 1, q: 2}\nb:\n  <<: *x\n  q: 3\n")
    assert doc.data["b"] == {"p": 1, "q": 3}
    assert doc.line_of(doc.data["b"], "p") == 1
    assert doc.line_of(doc.data["b"], "q") == 4
