"""The demand the capacity gate judges (pure): the highest reading over the analysis window.

Right after pods churn, a rate over series that Prometheus has not scraped yet (or has just
marked stale) under-states demand; the gate must not open on a dip that is only in the data.
"""

from __future__ import annotations

from collections import deque
from datetime import datetime, timedelta


class DemandWindow:
    """Demand readings of the last `window`; `peak()` is what the gate compares capacity with."""

    def __init__(self) -> None:
        self._readings: deque[tuple[datetime, float]] = deque()

    def add(self, at: datetime, value: float, window: timedelta) -> None:
        """A reading taken at `at`; readings older than `window` before it are dropped."""
        self._readings.append((at, value))
        while self._readings and self._readings[0][0] < at - window:
            self._readings.popleft()

    def peak(self) -> float | None:
        """The highest reading in the window (None before the first)."""
        return max((v for _, v in self._readings), default=None)

    def clear(self) -> None:
        """Forget every reading (a new attempt must not be judged on the last one's)."""
        self._readings.clear()


__all__ = ["DemandWindow"]
