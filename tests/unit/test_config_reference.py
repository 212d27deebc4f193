"""The generated config reference: complete, readable, and the committed copy is current."""

from __future__ import annotations

from pathlib import Path

from controller.core.config.reference import markdown_reference
from controller.core.config.schema import config_schema

DOC = Path(__file__).parents[2] / "docs" / "config-reference.md"


def test_reference_rows() -> None:
    text = markdown_reference()
    assert "| `prometheus.timeout` | duration |  | `10s` |" in text
    assert "| `rollouts[].canary.version` | string | yes |" in text
    assert "| `rollouts[].steps[].manualGate` | boolean |  | `false` |" in text
    assert "`rollouts[].analysis.metrics[].for`" in text
    assert "PT" not in text  # durations as a config writes them, not ISO 8601


def test_schema_defaults_are_written_like_a_config() -> None:
    props = config_schema()["$defs"]["PrometheusSettings"]["properties"]
    assert props["timeout"]["default"] == "10s"


def test_committed_reference_is_current() -> None:
    assert DOC.read_text() == markdown_reference(), "run `make schema`"
