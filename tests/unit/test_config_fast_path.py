"""The fast path for clean configs reads every file exactly as the line-numbered path does."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.config import load as load_module
from controller.config.load import _load_fast, load_config_text

CONFIG_DIR = Path(__file__).parents[2] / "config"


def slow(text: str) -> object:
    original = load_module._load_fast
    load_module._load_fast = lambda *_: None  # type: ignore[assignment]
    try:
        return load_config_text(text, "x.yaml").config
    finally:
        load_module._load_fast = original  # type: ignore[assignment]


@pytest.mark.parametrize("name", ["zai-proxy.yaml", "minimal.yaml"])
def test_examples_take_the_fast_path_and_agree(name: str) -> None:
    text = (CONFIG_DIR / name).read_text()
    fast = _load_fast(text, name, None)
    assert fast is not None
    assert fast.config == slow(text)


@pytest.mark.parametrize(
    "scalar",
    [
        "deleteStable: yes",
        "deleteStable: on",
        "weight: 010",
        "steps: [{weight: 010, hold: 1m}]",
        "flags: {deleteStable: yes}",
        "list: [on, off]",
    ],
)
def test_yaml11_only_scalars_take_the_slow_path(scalar: str) -> None:
    assert _load_fast(f"rollouts: []\nx:\n  {scalar}\n", "x.yaml", None) is None


def test_duplicate_keys_take_the_slow_path() -> None:
    assert _load_fast("prometheus:\n  url: a\n  url: b\n", "x.yaml", None) is None


def slow_warnings(text: str) -> list[str]:
    original = load_module._load_fast
    load_module._load_fast = lambda *_: None  # type: ignore[assignment]
    try:
        return [str(w) for w in load_config_text(text, "x.yaml").warnings]
    finally:
        load_module._load_fast = original  # type: ignore[assignment]


def test_warnings_carry_the_same_lines_on_both_paths() -> None:
    text = (
        "defaults:\n"
        "  flip: {bake: 1m}\n"
        "rollouts:\n"
        "  - name: web\n"
        "    service: web\n"
        "    replicas: 1\n"
        "    stable: {deployment: web}\n"
        "    canary: {deployment: web-v2, version: v2}\n"
        "    steps:\n"
        "      - {weight: 20, hold: 1m}\n"
        "      - weight: 100\n"
    )
    fast = _load_fast(text, "x.yaml", None)
    assert fast is not None and fast.warnings
    assert [str(w) for w in fast.warnings] == slow_warnings(text)
    assert any(w.line == 11 for w in fast.warnings)  # the 100% step
