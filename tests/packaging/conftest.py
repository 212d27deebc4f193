"""Fixtures of the packaging tests: the chart, installed once per session by the real Helm."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator

import pytest
import structlog

from controller.shell.log import configure_logging
from tests.packaging.chartcases import GOOD, ChartRun, Rendered, run_chart


@pytest.fixture(scope="session")
def chart_run(tmp_path_factory: pytest.TempPathFactory) -> ChartRun:
    """Every case of chartcases.py, rendered by one Helm worker (about a second)."""
    if importlib.util.find_spec("helm_sdkpy") is None:
        # Not a skip: CI must not pass without the chart tests (`make install-test` has it).
        pytest.fail("helm-sdkpy missing: pip install --ignore-requires-python helm-sdkpy==0.1.32")
    return run_chart(tmp_path_factory.mktemp("helm"))


@pytest.fixture(params=GOOD)
def scenario(request: pytest.FixtureRequest, chart_run: ChartRun) -> Rendered:
    """One successfully installed value set."""
    result = chart_run.results[request.param]
    assert result.error is None, result.error
    assert not result.unexpected
    return result


@pytest.fixture
def structlog_to_this_tests_stderr() -> Iterator[None]:
    """Log to the current stderr, whatever an earlier test configured, then put it back.

    `controller.ops.cli.main()` binds structlog to the sys.stderr of the moment; run in-process
    under capsys (tests/unit/test_cli.py) that is a stream closed after the test, and the
    controller's first log line would then crash its reconciler.
    """
    saved = structlog.get_config()
    configure_logging("console", "warning")
    yield
    structlog.configure(**saved)
