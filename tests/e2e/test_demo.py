"""`ptc demo` end to end, as the README's first command runs it (fast mode)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.mark.prometheus
def test_demo_completes_then_rolls_back() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "controller.ops.cli", "demo", "--speed", "4", "--no-color"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    out = result.stdout
    assert result.returncode == 0, out[-3000:] + result.stderr[-3000:]
    assert "analysis provider: prometheus" in out
    assert "rollout 1 (zai-proxy v1 -> v2): completed" in out
    assert "rollout 2 (zai-proxy v2 -> v3): rolled-back" in out
    assert "bad-gateway-ratio" in out.split("summary", 1)[1]
    assert "violations: 0" in out
    # Plain lines when stdout is not a terminal: one per decision.
    assert " step-reached " in out and " flipped " in out and " rollback " in out
