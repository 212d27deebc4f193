"""The zai-proxy adaptive rate limiter, re-implemented for simulated pods.

Behaviour follows the real proxy (`proxy/main.go` AdaptiveRateLimiter, `ratelimiter_state.go`),
confirmed on the real binary (research note, section 7):

* A token bucket (rate = current limit, burst = max(1, int(2 x rate))) admits every upstream
  attempt, retries included. Waiting is unbounded and FIFO, as `Limiter.Wait` callers queue.
* Windows are not timer-driven: a window closes at the first limiter event (an upstream 429 of
  a class that feeds the limiter, or a final 2xx) at least `adjustment_window` (30 s) after the
  previous adjustment - the first one 30 s after process start. Its 429 share is
  429s / (429s + 2xx):
  - share > 5 %: ceiling = alpha x rate + (1 - alpha) x ceiling, rate = ceiling x (1 - margin),
    floored at the minimum ("decrease" - even when the rate goes *up*, as it does for a cold
    pod whose ceiling estimate is still RATE_LIMIT_MAX); the state file is written;
  - share < 1 %: a clean window. At `probe_interval` clean windows in a row the rate probes
    min(ceiling x (1 + margin), max) ("probe", counted even when it changes nothing); else,
    below the hold point, it closes half the gap (at least 0.25 req/s) ("increase");
  - 1-5 %: no change.
* The cold ceiling estimate is RATE_LIMIT_MAX; it never rises on clean windows.
* At start a state file younger than RATE_LIMIT_STATE_MAX_AGE restores the ceiling and resumes
  at the persisted hold, whatever RATE_LIMIT_INITIAL says (`restored_from_state`).
* `reset()` (POST /admin/reset-rate-limit) puts rate and ceiling to RATE_LIMIT_INITIAL and
  deletes the state file - but the rate *gauge* is only ever set at start, on a restore and when
  an adjustment changes the rate, so after a reset it keeps showing the old value
  (`gauge` here).

Time comes from an injected clock, and every recorded event carries its own time, so tests
drive windows without sleeping and a simulated request's outcome lands when it completes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

Clock = Callable[[], float]
"""Monotonic seconds; `time.monotonic` and `asyncio`'s `loop.time` qualify."""

INCREASE = "increase"
DECREASE = "decrease"
PROBE = "probe"
DEFAULT_STATE_MAX_AGE = 6 * 3600.0


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
    state_max_age: float = DEFAULT_STATE_MAX_AGE

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


@dataclass(frozen=True)
class RateLimitState:
    """The state file's content: `{"ceiling", "hold", "ts"}` (ts in clock seconds)."""

    ceiling: float
    hold: float
    ts: float


class StateFile:
    """One state-file path on one filesystem; see `StateFiles`."""

    def __init__(self, files: StateFiles, key: tuple[str, ...]) -> None:
        self._files = files
        self.key = key

    def load(self) -> RateLimitState | None:
        """The snapshot, or None when there is no file."""
        return self._files.data.get(self.key)

    def save(self, state: RateLimitState) -> None:
        """Write the snapshot (replacing any)."""
        self._files.data[self.key] = state

    def delete(self) -> None:
        """Remove the file (no error when there is none)."""
        self._files.data.pop(self.key, None)


class StateFiles:
    """The filesystems state files live on: what outlives a proxy process and what does not.

    Keys name a filesystem and a path; the pod runtime decides which filesystem a pod's
    RATE_LIMIT_STATE_FILE is on (its own container, an emptyDir, a PVC, the node).
    """

    def __init__(self) -> None:
        self.data: dict[tuple[str, ...], RateLimitState] = {}

    def file(self, *key: str) -> StateFile:
        """The state file at `key`."""
        return StateFile(self, key)


def burst_for(rate: float) -> int:
    """Bucket depth for a rate, as the real proxy sizes it."""
    if rate <= 0:
        return 0
    return max(1, int(rate * 2))


def clamp(value: float, low: float, high: float) -> float:
    """`value` confined to [low, high]."""
    return min(max(value, low), high)


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

    def reserve(self, now: float) -> float:
        """Take one token; return the wait until it is usable."""
        self._advance(now)
        self.tokens -= 1.0
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate

    def set_rate(self, rate: float, now: float) -> None:
        """Change rate and burst; tokens accrued so far are kept (clipped by the next advance)."""
        self._advance(now)
        self.rate = rate
        self.burst = burst_for(rate)


class AdaptiveRateLimiter:
    """Per-pod adaptive limit: grows on clean windows, backs off on upstream 429 windows."""

    def __init__(
        self, settings: LimiterSettings, clock: Clock, state_file: StateFile | None = None
    ) -> None:
        self.settings = settings
        self._clock = clock
        self.state_file = state_file
        now = clock()
        self.current_rate = settings.initial
        self.estimated_ceiling = settings.maximum  # assumed until a 429 window teaches otherwise
        self.ceiling_updated_at: float | None = None
        self.restored_from_state = False
        self.clean_windows = 0
        self._bucket = TokenBucket(settings.initial, now)
        self._last_adjustment = now
        self._recent_429 = 0
        self._recent_success = 0
        self._restore(now)
        # zai_proxy_rate_limit_requests_per_second: set at start (after a restore) and on
        # every rate change, never by reset().
        self.gauge = self.current_rate

    def _restore(self, now: float) -> None:
        state = self.state_file.load() if self.state_file is not None else None
        if state is None or state.ceiling <= 0 or state.hold <= 0:
            return
        if now - state.ts > self.settings.state_max_age:
            return  # too old: start from RATE_LIMIT_INITIAL with the RATE_LIMIT_MAX assumption
        s = self.settings
        ceiling = clamp(state.ceiling, s.minimum, s.maximum)
        hold = clamp(state.hold, s.minimum, ceiling)
        self.estimated_ceiling = ceiling
        self.current_rate = hold
        self._bucket.set_rate(hold, now)
        self.ceiling_updated_at = state.ts
        self.restored_from_state = True

    @property
    def hold(self) -> float:
        """Rate the limiter converges to for the current ceiling estimate (/health `hold`)."""
        s = self.settings
        return clamp(self.estimated_ceiling * (1 - s.hold_margin), s.minimum, s.maximum)

    def reserve(self, now: float | None = None) -> float:
        """Reserve a token at `now` (default: the clock's); return when it is usable."""
        at = self._clock() if now is None else now
        return at + self._bucket.reserve(at)

    def tokens_available(self) -> float:
        """Current bucket balance (for tests and diagnostics)."""
        return self._bucket.available(self._clock())

    def record_success(self, at: float | None = None) -> str | None:
        """Count a final 2xx at `at`; return the adjustment direction, if a window closed."""
        self._recent_success += 1
        return self._try_adjust(self._clock() if at is None else at)

    def record_429(self, at: float | None = None) -> str | None:
        """Count an upstream 429 that feeds the limiter; return the adjustment, if any."""
        self._recent_429 += 1
        return self._try_adjust(self._clock() if at is None else at)

    def reset(self) -> None:
        """POST /admin/reset-rate-limit: back to RATE_LIMIT_INITIAL, state file deleted."""
        now = self._clock()
        initial = self.settings.initial
        self.current_rate = initial
        self.estimated_ceiling = initial
        self.clean_windows = 0
        self._bucket = TokenBucket(initial, now)
        self._last_adjustment = now
        self.ceiling_updated_at = None
        self.restored_from_state = False
        self._recent_429 = self._recent_success = 0
        if self.state_file is not None:
            self.state_file.delete()

    def _try_adjust(self, now: float) -> str | None:
        s = self.settings
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
            self.gauge = new_rate
        self._last_adjustment = now
        if direction == DECREASE and self.state_file is not None:
            self.state_file.save(RateLimitState(self.estimated_ceiling, self.current_rate, now))
        return direction


def parse_go_duration(text: str) -> float | None:
    """Seconds in a Go duration string (`6h`, `1h30m`, `90s`, `1.5h`), or None if invalid."""
    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    rest = text.strip()
    if rest in ("0", ""):
        return 0.0 if rest == "0" else None
    sign = -1.0 if rest.startswith("-") else 1.0
    rest = rest.lstrip("+-")
    total = 0.0
    while rest:
        i = 0
        while i < len(rest) and (rest[i].isdigit() or rest[i] == "."):
            i += 1
        number, rest = rest[:i], rest[i:]
        j = 0
        while j < len(rest) and not (rest[j].isdigit() or rest[j] == "."):
            j += 1
        unit, rest = rest[:j], rest[j:]
        if not number or number == "." or number.count(".") > 1 or unit not in units:
            return None
        total += float(number) * units[unit]
    return sign * total if math.isfinite(total) else None
