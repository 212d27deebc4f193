"""The simulated limiter against the real binary's traces (research note, section 7).

Clients are closed-loop, as in the note's runs: each sends its next request when the previous
one is answered, so a limiter slower than the clients sets the pace. Time is a stepped fake
clock: minutes of limiter history take milliseconds.
"""

from __future__ import annotations

import heapq
import random

import pytest

from controller.sandbox.faults import FaultProfile, FaultProfiles, Latency
from controller.sandbox.ratelimiter import StateFiles
from controller.sandbox.zaiproxy import SimulatedZaiProxy
from tests.sandbox.conftest_pods import FakeClock, make_pod

INSTANT = Latency(0.001, 0.001)
START = 1000.0  # FakeClock's start: the process starts then


class Bench:
    """One simulated process, its upstream, and closed-loop clients on a fake clock."""

    def __init__(
        self,
        env: dict[str, str],
        *,
        clients: int = 6,
        files: StateFiles | None = None,
        clock: FakeClock | None = None,
    ) -> None:
        self.clock = clock or FakeClock(START)
        self.faults = FaultProfiles(FaultProfile(latency=INSTANT))
        self.files = files or StateFiles()
        self.env = {"MAX_WORKERS": "1000", **env}
        self.proxy = self._start()
        self.clients = clients
        self._next = [self.clock.now] * clients
        self.gauges: list[float] = []  # the rate gauge after each adjustment

    def _start(self) -> SimulatedZaiProxy:
        return SimulatedZaiProxy.from_pod(
            make_pod("zai-proxy-abc12-xyz12", env=self.env),
            "zai-proxy",
            faults=self.faults,
            clock=self.clock,
            rng=random.Random(3),
            state_file=self.files.file("node", "/var/lib/zai-proxy/ceiling.json"),
        )

    def restart(self, env: dict[str, str] | None = None) -> None:
        """The process exits and starts again on the same filesystem."""
        self.env.update(env or {})
        self.proxy = self._start()

    def gauge(self) -> float:
        """zai_proxy_rate_limit_requests_per_second as a scrape now reads it."""
        self.proxy.render_metrics()
        return self.proxy.metrics.rate_limit_rate.get((self.proxy.variant,))

    def run(self, seconds: float) -> None:
        """Run the clients for `seconds`, recording the gauge whenever an adjustment lands."""
        end = self.clock.now + seconds
        heapq.heapify(self._next)
        adjustments = self._adjustment_count()
        while self._next[0] < end:
            at = heapq.heappop(self._next)
            self.clock.now = max(self.clock.now, at)
            outcome = self.proxy.handle()
            heapq.heappush(self._next, self.clock.now + outcome.latency)
            count = self._adjustment_count()
            if count != adjustments:
                adjustments = count
                self.gauges.append(self.gauge())
        self.clock.now = end
        self.proxy.render_metrics()

    def _adjustment_count(self) -> float:
        return sum(self.proxy.rate_limit_adjustments.values.values())

    def directions(self) -> dict[str, float]:
        return {k[0]: v for k, v in self.proxy.rate_limit_adjustments.values.items()}


def test_section7_cold_pod_on_a_clean_upstream_reaches_94_percent_of_max_in_two_minutes() -> None:
    bench = Bench({"RATE_LIMIT_INITIAL": "2", "RATE_LIMIT_MAX": "50"})
    bench.run(10 * 30 + 20)
    # The note: 2 -> 25.5 -> 37.25 -> 43.125 -> 46.06 -> 47.53 -> 48.27 -> 48.63 -> 48.88
    # -> 49 -> 50 (probe at the 10th clean window, capped at max).
    assert bench.gauges == pytest.approx(
        [25.5, 37.25, 43.125, 46.0625, 47.53125, 48.265625, 48.6328125, 48.8828125, 49, 50]
    )
    assert bench.directions() == {"increase": 9, "probe": 1}
    assert bench.gauges[3] / 50 >= 0.92  # after 4 windows (2 minutes): ~94 % of max


def test_section7_first_window_closes_30s_after_start_and_windows_follow_events() -> None:
    bench = Bench({"RATE_LIMIT_INITIAL": "2"}, clients=1)
    bench.run(29.9)
    assert bench.gauges == []  # no window before 30 s after process start
    bench.run(0.2)
    assert bench.gauges == [25.5]
    bench.clients = 0
    bench._next = [bench.clock.now + 3600.0]  # an hour of silence: no timer adjusts anything
    bench.run(3599.0)
    assert bench.gauges == [25.5]
    # After the idle gap the next single request closes a window containing only itself.
    bench.proxy.handle()
    bench.clock.advance(1.0)
    assert bench.proxy.limiter.current_rate == pytest.approx(25.5 + (49 - 25.5) / 2)


def test_section7_first_429_window_on_a_cold_pod_moves_the_rate_up_labelled_decrease() -> None:
    bench = Bench({"RATE_LIMIT_INITIAL": "2"}, clients=9)
    bench.run(30.5)
    assert bench.gauges == [25.5]
    # From here on the upstream refuses a third of the attempts (the note: 34 % 429s).
    bench.faults.default = FaultProfile(upstream_429=0.34, latency=INSTANT)
    bench.run(5 * 30)
    assert bench.gauges[1] == pytest.approx(41.797)  # UP, from 25.5: ceiling 50 -> 42.65
    assert bench.proxy.limiter.estimated_ceiling < 42.65
    assert bench.gauges[2] == pytest.approx(41.546, abs=0.001)
    assert bench.gauges[3] == pytest.approx(41.30, abs=0.01)
    # Each further 429 window lowers the rate by only ~0.6 %.
    steps = [b / a for a, b in zip(bench.gauges[2:], bench.gauges[3:], strict=False)]
    assert all(s == pytest.approx(0.994, abs=0.001) for s in steps)
    assert bench.directions()["decrease"] == len(bench.gauges) - 1


def test_section7_default_start_10_to_29_5_to_42_97_on_the_first_429_window() -> None:
    bench = Bench({}, clients=12)
    bench.run(30.5)
    bench.faults.default = FaultProfile(upstream_429=0.3, latency=INSTANT)
    bench.run(31)
    assert bench.gauges[:2] == pytest.approx([29.5, 42.973])
    health = bench.proxy.health()["rate_limit"]
    assert (health["ceiling"], health["hold"]) == pytest.approx((43.85, 42.973))


def test_section7_a_429_share_between_1_and_5_percent_changes_nothing() -> None:
    bench = Bench({"RATE_LIMIT_INITIAL": "40"}, clients=4)
    bench.faults.default = FaultProfile(frequency_429=0.03, latency=INSTANT)
    bench.run(30 * 4 + 5)
    assert bench.directions() == {} and bench.proxy.limiter.current_rate == 40


@pytest.mark.parametrize(
    "profile",
    [
        FaultProfile(error_502=0.5, latency=INSTANT),
        FaultProfile(error_500=0.5, latency=INSTANT),
        FaultProfile(dropped=0.5, latency=INSTANT),
        FaultProfile(concurrency_429=0.5, latency=INSTANT),
        FaultProfile(quota_429=0.5, latency=INSTANT),
    ],
    ids=["502", "500", "dropped", "1302", "1308"],
)
def test_section7_answers_that_are_not_rate_pressure_never_lower_the_limit(
    profile: FaultProfile,
) -> None:
    bench = Bench({"RATE_LIMIT_INITIAL": "20"}, clients=4)
    bench.faults.default = profile
    bench.run(30 * 3 + 5)
    assert bench.directions() == {"increase": 3}  # clean windows as far as the limiter knows
    assert bench.gauges == sorted(bench.gauges)


def test_section7_restored_ceiling_probes_to_1_02x_and_stays_there() -> None:
    files = StateFiles()
    bench = Bench({"RATE_LIMIT_INITIAL": "2"}, clients=9, files=files)
    bench.faults.default = FaultProfile(upstream_429=0.3, latency=INSTANT)
    bench.run(30.5 + 30 * 6)  # learn a ceiling
    ceiling = bench.proxy.limiter.estimated_ceiling
    bench.faults.default = FaultProfile(latency=INSTANT)
    bench.restart()
    assert bench.proxy.limiter.restored_from_state
    bench.gauges.clear()
    bench.run(30 * 35)  # 35 clean windows: three probes
    # The ceiling estimate never rises on clean windows: the probe goes to 1.02 x ceiling and
    # every later probe changes nothing.
    assert bench.proxy.limiter.estimated_ceiling == ceiling
    assert bench.proxy.limiter.current_rate == pytest.approx(ceiling * 1.02)
    assert bench.directions()["probe"] == 3
    assert bench.gauges[-1] == pytest.approx(ceiling * 1.02)


def test_section7_restart_resumes_from_a_young_state_file_whatever_rate_limit_initial_says() -> (
    None
):
    files = StateFiles()
    bench = Bench({"RATE_LIMIT_INITIAL": "2"}, clients=9, files=files)
    bench.faults.default = FaultProfile(upstream_429=0.3, latency=INSTANT)
    bench.run(30.5 + 30 * 10)
    hold = bench.proxy.limiter.current_rate
    ceiling = bench.proxy.limiter.estimated_ceiling
    saved = files.data[("node", "/var/lib/zai-proxy/ceiling.json")]
    assert (saved.ceiling, saved.hold) == (ceiling, hold)  # written by the 429 windows

    bench.clock.advance(5 * 3600)  # within RATE_LIMIT_STATE_MAX_AGE (6h)
    bench.restart({"RATE_LIMIT_INITIAL": "2"})
    health = bench.proxy.health()["rate_limit"]
    assert health["current_rate"] == hold and health["restored_from_state"] is True
    assert health["ceiling"] == ceiling
    assert bench.gauge() == hold

    bench.clock.advance(2 * 3600)  # the file is now older than 6 h
    bench.restart()
    assert bench.proxy.limiter.current_rate == 2 and not bench.proxy.limiter.restored_from_state
    bench.restart({"RATE_LIMIT_STATE_MAX_AGE": "12h"})
    assert bench.proxy.limiter.current_rate == hold


def test_section7_a_pod_that_never_saw_429s_has_no_state_file() -> None:
    files = StateFiles()
    bench = Bench({"RATE_LIMIT_INITIAL": "2"}, files=files)
    bench.run(30 * 5)
    assert files.data == {}
    bench.restart()
    assert bench.proxy.limiter.current_rate == 2 and not bench.proxy.limiter.restored_from_state


def test_section7_admin_reset_leaves_the_gauge_stale_and_caps_the_rate_at_1_02x_initial() -> None:
    files = StateFiles()
    bench = Bench({"RATE_LIMIT_INITIAL": "10"}, clients=9, files=files)
    bench.faults.default = FaultProfile(upstream_429=0.3, latency=INSTANT)
    bench.run(30.5 + 30 * 3)
    before = bench.gauge()
    bench.faults.default = FaultProfile(latency=INSTANT)
    assert bench.proxy.reset_rate_limit() == {"current_rate": 10, "status": "reset"}
    assert files.data == {}  # the state file is deleted
    health = bench.proxy.health()["rate_limit"]
    assert (health["current_rate"], health["ceiling"], health["hold"]) == (10, 10, 9.8)
    assert "ceiling_updated_at" not in health and health["restored_from_state"] is False
    assert bench.gauge() == before != 10  # the gauge kept its old value
    bench.gauges.clear()
    bench.run(30 * 25)  # without 429s the rate can never exceed 1.02 x RATE_LIMIT_INITIAL
    assert bench.proxy.limiter.current_rate == pytest.approx(10.2)
    assert max(bench.gauges) == pytest.approx(10.2)
