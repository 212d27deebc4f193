"""Suite-wide fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog


@pytest.fixture(autouse=True)
def _fresh_structlog() -> Iterator[None]:
    """Each test starts from structlog's defaults.

    `ptc`'s main() configures logging (level, stderr) for the process; a test that ran it
    in-process must not change what the next test's `capture_logs` sees.
    """
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()
