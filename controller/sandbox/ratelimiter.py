"""The zai-proxy adaptive rate limiter, re-implemented for simulated pods.

Behaviour follows the real proxy (jedarden/zai-proxy, `proxy/main.go` AdaptiveRateLimiter):

* A token bucket (rate = current limit, burst = max(1, int(2 x rate))) gates requests.
* Every adjustment window (30 s in the real proxy) the outcomes recorded since the last
  adjustment are judged, lazily, on the next recorded outcome:
  - upstream 429 share > 5 %: the ceiling estimate moves toward the current rate by EWMA
    (alpha 0.3) and the limit drops to ceiling x (1 - hold margin), floored at the minimum;
  - 429 share < 1 %: a clean window. Every `probe_interval` clean windows the limit probes
    above the ceiling (ceiling x (1 + margin), capped at the maximum); otherwise, while below
    the hold point, it closes half the gap to it (at least 0.25 req/s per window);
  - in between: no change.
* The ceiling estimate starts at the maximum, so a cold pod climbs from RATE_LIMIT_INITIAL
  toward RATE_LIMIT_MAX x 0.98 one window at a time.

Everything takes time from an injected clock so tests drive windows without sleeping.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

Clock = Callable[[], float]
"""Monotonic seconds; `time.monotonic` and `asyncio`'s `loop.time` qualify."""

INCREASE = "increase"
DECREASE = "decrease"
PROBE = "probe"


@dataclass(frozen=True)
class LimiterSettings:
    """Limiter parameters; defaults are the real proxy's (`proxy/config/config.go`)."""

    initial: float = 10.0
    minimum: float = 1.0
    maximum: float = 50.0
    ceiling_alpha: float = 0.3
    hold_margin: float = 0.02
    probe_interval: int = 10
    adjustment_window: float = 30.0

    def __post_init__(self) -> None:
        if not 0 < self.minimum <= self.maximum:
            raise ValueError(f"need 0 < minimum <= maximum, got {self.minimum}, {self.maximum}")
        if self.initial <= 0:
            raise ValueError(f"initial rate must be positive, got {self.initial}")
        if not 0 < self.ceiling_alpha <= 1:
            raise ValueError(f"ceiling_alpha must be in (0, 1], got {self.ceiling_alpha}")
        if not 0 < self.hold_margin < 1:
            raise ValueError(f"hold_margin must be in (0, 1), got {self.hold_margin}")
        if self.adjustment_window < 0:
            raise ValueError("adjustment_window must be >= 0")


def burst_for(rate: float) -> int:
    """Bucket depth for a rate, as the real proxy sizes it."""
    if rate <= 0:
        return 0
    return max(1, int(rate * 2))


class TokenBucket:
    """Token bucket with reservations, like golang.org/x/time/rate.

    Reservations may drive the balance negative: a request that reserves now is admitted
    after the returned wait, and later arrivals queue behind it (FIFO), as `Limiter.Wait`
    callers do in the real proxy.
    """

    def __init__(self, rate: float, now: float) -> None:
        self.rate = rate
        self.burst = burst_for(rate)
        self.tokens = float(self.burst)
        self._last = now

    def _advance(self, now: float) -> None:
        if now > self._last:
            self.tokens = min(float(self.burst), self.tokens + (now - self._last) * self.rate)
            self._last = now

    def available(self, now: float) -> float:
        """Tokens available at `now` (negative while reservations are queued)."""
        self._advance(now)
        return self.tokens

    def reserve(self, now: float, max_wait: float) -> float | None:
        """Take one token; return the wait until it is usable, or None if that exceeds max_wait."""
        self._advance(now)
        if self.rate <= 0:
            return None
        after = self.tokens - 1.0
        wait = 0.0 if after >= 0 else -after / self.rate
        if wait > max_wait:
            return None
        self.tokens = after
        return wait

    def set_rate(self, rate: float, now: float) -> None:
        """Change rate and burst; tokens accrued so far are kept (clipped by the next advance)."""
        self._advance(now)
        self.rate = rate
        self.burst = burst_for(rate)


class AdaptiveRateLimiter:
    """Per-pod adaptive limit: grows on clean windows, backs off on upstream 429s."""

    def __init__(self, settings: LimiterSettings, clock: Clock) -> None:
        self.settings = settings
        self._clock = clock
        now = clock()
        self.current_rate = settings.initial
        self.estimated_ceiling = settings.maximum  # assumed until a 429 window teaches otherwise
        self.ceiling_updated_at: float | None = None
        self.clean_windows = 0
        self._bucket = TokenBucket(settings.initial, now)
        self._last_adjustment = now
        self._recent_429 = 0
        self._recent_success = 0

    @property
    def hold(self) -> float:
        """Rate the limiter converges to for the current ceiling estimate."""
        s = self.settings
        return min(max(self.estimated_ceiling * (1 - s.hold_margin), s.minimum), s.maximum)

    def acquire(self, max_wait: float) -> float | None:
        """Reserve a token now; return the queueing delay, or None when over the limit."""
        return self._bucket.reserve(self._clock(), max_wait)

    def tokens_available(self) -> float:
        """Current bucket balance (for tests and diagnostics)."""
        return self._bucket.available(self._clock())

    def record_success(self) -> str | None:
        """Count a successful upstream response; return the adjustment direction, if any."""
        self._recent_success += 1
        return self._try_adjust()

    def record_429(self) -> str | None:
        """Count an upstream 429; return the adjustment direction, if any."""
        self._recent_429 += 1
        return self._try_adjust()

    def _try_adjust(self) -> str | None:
        s = self.settings
        now = self._clock()
        if now - self._last_adjustment < s.adjustment_window:
            return None
        total = self._recent_429 + self._recent_success
        if total == 0:
            return None
        share_429 = self._recent_429 / total
        self._recent_429 = self._recent_success = 0

        new_rate = self.current_rate
        direction: str | None = None
        if share_429 > 0.05:
            self.estimated_ceiling = (
                s.ceiling_alpha * self.current_rate + (1 - s.ceiling_alpha) * self.estimated_ceiling
            )
            self.clean_windows = 0
            self.ceiling_updated_at = now
            new_rate = max(self.estimated_ceiling * (1 - s.hold_margin), s.minimum)
            direction = DECREASE
        elif share_429 < 0.01:
            self.clean_windows += 1
            target = self.estimated_ceiling * (1 - s.hold_margin)
            if (
                s.probe_interval > 0
                and self.clean_windows >= s.probe_interval
                and self.current_rate < s.maximum
            ):
                # The upstream ceiling may have moved up: test just above it.
                new_rate = min(self.estimated_ceiling * (1 + s.hold_margin), s.maximum)
                self.clean_windows = 0
                direction = PROBE
            elif self.current_rate < target:
                step = max((target - self.current_rate) * 0.5, 0.25)
                new_rate = min(self.current_rate + step, target)
                direction = INCREASE

        if new_rate != self.current_rate:
            self.current_rate = new_rate
            self._bucket.set_rate(new_rate, now)
        self._last_adjustment = now
        return direction
