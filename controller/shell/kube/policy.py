"""Timeouts, retry and reconnect settings of the adapter, and the tenacity waits built from them."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import structlog
import tenacity

from controller.shell.kube.errors import Unavailable

R = TypeVar("R")
log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class KubePolicy:
    """How long calls may take and how they are retried.

    Requests: each attempt ends within ``timeout`` s; Unavailable is retried up to ``attempts``
    times in all, waiting ``backoff_initial · 2^n`` (plus jitter, at most ``backoff_max``; a
    ``Retry-After`` from a 429 is honoured up to the cap). Worst case per call is roughly
    ``attempts · timeout + (attempts - 1) · backoff_max``.

    Informers: watches ask the server to end each stream after ``watch_timeout`` s (streams
    rotate); a stream silent for ``watch_timeout + watch_idle_grace`` s is dead. Failed or early
    ended streams reconnect after ``reconnect_initial · 2^n`` (+ jitter, at most
    ``reconnect_max``); a stream that stayed up ``healthy_after`` s or delivered events resets it.
    """

    timeout: float = 10.0
    attempts: int = 5
    backoff_initial: float = 0.2
    backoff_max: float = 5.0
    watch_timeout: int = 300
    watch_idle_grace: float = 30.0
    reconnect_initial: float = 0.5
    reconnect_max: float = 30.0
    healthy_after: float = 5.0

    def __post_init__(self) -> None:
        if self.timeout <= 0 or self.attempts < 1 or self.watch_timeout < 1:
            raise ValueError("timeout > 0, attempts >= 1 and watch_timeout >= 1 are required")

    def request_wait(self) -> tenacity.wait.wait_base:
        """Backoff between request attempts (honours Retry-After, capped)."""
        return _RetryAfterOrBackoff(
            exponential_jitter(self.backoff_initial, self.backoff_max), self.backoff_max
        )

    def reconnect_wait(self) -> tenacity.wait.wait_base:
        """Backoff between watch reconnects."""
        return exponential_jitter(self.reconnect_initial, self.reconnect_max)


# tenacity 9.2 renamed wait_exponential_jitter's `initial` to `multiplier` and deprecates the
# old name; the releases pyproject allows before it (>= 8.2) only know `initial`.
_FIRST_WAIT = (
    "multiplier"
    if "multiplier" in inspect.signature(tenacity.wait_exponential_jitter).parameters
    else "initial"
)


def exponential_jitter(first: float, cap: float) -> tenacity.wait.wait_base:
    """first * 2**n seconds plus up to `first` of jitter, at most `cap`."""
    return tenacity.wait_exponential_jitter(**{_FIRST_WAIT: first}, max=cap, jitter=first)


class _RetryAfterOrBackoff(tenacity.wait.wait_base):
    """The larger of the backoff and the server's Retry-After, never above ``cap``."""

    def __init__(self, backoff: tenacity.wait.wait_base, cap: float) -> None:
        self.backoff = backoff
        self.cap = cap

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        wait = self.backoff(retry_state)
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        if isinstance(error, Unavailable) and error.retry_after:
            wait = max(wait, error.retry_after)
        return min(wait, self.cap)


async def call_with_retries(
    policy: KubePolicy,
    attempt: Callable[[], Awaitable[R]],
    what: str,
    on_retry: Callable[[], None] | None = None,
) -> R:
    """Await ``attempt()``, retrying Unavailable per ``policy``; other errors pass at once.

    The only place requests are retried. ``on_retry`` runs before each retry (counters, or
    noting that an earlier attempt may have reached the server).
    """

    def before_sleep(state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        if on_retry is not None:
            on_retry()
        log.info(
            "api request retry",
            request=what,
            attempt=state.attempt_number,
            error=str(error),
            delay=round(state.next_action.sleep, 3) if state.next_action else None,
        )

    async for try_ in tenacity.AsyncRetrying(
        stop=tenacity.stop_after_attempt(policy.attempts),
        wait=policy.request_wait(),
        retry=tenacity.retry_if_exception_type(Unavailable),
        before_sleep=before_sleep,
        reraise=True,
    ):
        with try_:
            return await attempt()
    raise AssertionError("unreachable: tenacity re-raises the last error")
