"""The capacity gate judges the highest demand of the analysis window (policy in the core)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from controller.core.analysis.demand import DemandWindow

T0 = datetime(2026, 12, 1, tzinfo=UTC)
WINDOW = timedelta(minutes=2)


def test_a_dip_after_pods_churn_does_not_lower_the_demand() -> None:
    w = DemandWindow()
    assert w.peak() is None
    w.add(T0, 40.0, WINDOW)
    w.add(T0 + timedelta(seconds=30), 12.0, WINDOW)  # the new pods' series not scraped yet
    assert w.peak() == 40.0
    w.add(T0 + timedelta(seconds=121), 15.0, WINDOW)  # the 40 left the window
    assert w.peak() == 15.0
    w.clear()
    assert w.peak() is None


@given(st.lists(st.tuples(st.integers(0, 600), st.floats(0, 1e6)), min_size=1, max_size=40))
def test_peak_is_the_max_of_the_readings_within_the_window(
    readings: list[tuple[int, float]],
) -> None:
    w = DemandWindow()
    ordered = sorted(readings)
    for second, value in ordered:
        w.add(T0 + timedelta(seconds=second), value, WINDOW)
    last = ordered[-1][0]
    assert w.peak() == max(v for s, v in ordered if s >= last - WINDOW.total_seconds())
