"""The real zai-proxy's retry policy, per upstream answer (pure: no clock, no I/O).

From `proxy/handler.go` and `proxy/zai_error.go`, as measured on the real binary (research note,
section 5). For one client request the proxy makes up to MAX_RETRIES + 1 upstream attempts;
each attempt first takes a limiter token (retries too), and each answer decides:

============================= ======== ================================ =========================
upstream answer               retried  wait before the next attempt     the client finally gets
============================= ======== ================================ =========================
200, valid JSON               -        -                                200 (limiter fed success)
502 / 500 (any >= 400 but 429) no       -                               the same status
429 code 1308/1310 (quota)    no       -                                429, class quota
429 code 1302 (concurrency)   yes      max(1/2/4 s, Retry-After)        429, class concurrency
429 code 1303/1305 (frequency) yes     max(jitter(1/2/4 s), Retry-After) 429, class frequency
429 without a known code      yes      Retry-After + 1/2/4 s            429, class unknown
connection closed             yes      1/2/4 s                          502 "Upstream error"
200 with truncated JSON       yes      1/2/4 s                          502 "... after retries"
============================= ======== ================================ =========================

``jitter(b)`` lies in [b/2, b). Every 429 attempt counts once in
``upstream_errors_total{error_type="429"}``; only the frequency and unknown classes feed the
adaptive limiter (`Record429`). Every retry counts ``retry_attempts_total{reason}`` when it is
decided and ``{reason="retry"}`` once its waits are over.

`trace_request` plays one request through this policy and returns what happened when, so the
simulated proxy can apply each effect (a metric, a limiter event) at its own time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from controller.sandbox.faults import Answer, Attempt

# "final" is the answer itself (requests_total, the duration), scheduled by the proxy.
EventKind = Literal[
    "wait", "upstream_error", "retry_reason", "retry", "limiter_429", "limiter_ok", "final"
]


@dataclass(frozen=True)
class Rule:
    """How the proxy treats one kind of upstream answer."""

    error_type: str | None  # upstream_errors_total{error_type}; None: not an error
    retried: bool
    retry_reason: str | None  # retry_attempts_total{reason} when retried
    feeds_limiter: bool  # a 429 the adaptive limiter learns from
    status: int  # what the client gets when this answer ends the request
    error_class: str | None = None  # X-Zai-Error-Class of a final 429
    code: str | None = None  # X-Zai-Error-Code
    body: str = ""  # the proxy's own error text ("" : the upstream's body is passed on)


RULES: dict[Answer, Rule] = {
    Answer.OK: Rule(None, False, None, False, 200),
    Answer.ERROR_502: Rule("502", False, None, False, 502),
    Answer.ERROR_500: Rule("500", False, None, False, 500),
    Answer.NOT_FOUND: Rule("404", False, None, False, 404),
    Answer.QUOTA: Rule("429", False, None, False, 429, "quota", "1308"),
    Answer.CONCURRENCY: Rule("429", True, "429", False, 429, "concurrency", "1302"),
    Answer.FREQUENCY: Rule("429", True, "429", True, 429, "frequency", "1303"),
    Answer.RATE_LIMITED: Rule("429", True, "429", True, 429, "unknown"),
    Answer.DROPPED: Rule(
        "upstream_connection", True, "network_error", False, 502, body="Upstream error"
    ),
    Answer.TRUNCATED: Rule(
        "truncated_response",
        True,
        "truncated_response",
        False,
        502,
        body="Upstream returned empty or malformed response after retries",
    ),
}

CAPACITY_BODY = "Service at capacity"


def backoff(retry: int) -> float:
    """The plain exponential curve: 1 s before the first retry, then 2 s, 4 s, ..."""
    return float(2 ** (min(retry, 32) - 1)) if retry > 0 else 0.0


def retry_delay(answer: Answer, retry: int, retry_after: int | None, jitter: float) -> float:
    """Seconds between an answer and the next attempt (`retry` counts that attempt from 1).

    `jitter` is a uniform draw in [0, 1) (the frequency class only).
    """
    base = backoff(retry)
    header = float(retry_after or 0)
    if answer is Answer.RATE_LIMITED:
        return header + base  # Retry-After first, then the curve: both waits
    if answer is Answer.FREQUENCY:
        u = jitter if 0.0 <= jitter < 1.0 else 0.0
        return max(base / 2 + base / 2 * u, header)
    if answer is Answer.CONCURRENCY:
        return max(base, header)
    return base


class Event(NamedTuple):
    """One effect of a request at its time: a metric to count or a limiter event."""

    at: float
    kind: EventKind
    label: str = ""
    value: float = 0.0


@dataclass
class RequestTrace:
    """One request's course: final status, when it ended, and every effect with its time."""

    start: float
    status: int = 0
    end: float = 0.0
    attempts: int = 0
    rule: Rule | None = None  # the rule of the answer that ended it
    events: list[Event] = field(default_factory=list)

    @property
    def latency(self) -> float:
        """Seconds from arrival to the answer (what request_duration_seconds observes)."""
        return self.end - self.start

    def headers(self, retry_after: int | None) -> dict[str, str]:
        """The headers a final classified 429 carries for the client."""
        rule = self.rule
        if rule is None or rule.error_class is None:
            return {}
        out = {"X-Zai-Error-Class": rule.error_class}
        if rule.code is not None:
            out["X-Zai-Error-Code"] = rule.code
        if retry_after is not None:
            out["Retry-After"] = str(retry_after)
        return out


def trace_request(
    start: float,
    *,
    max_retries: int,
    attempt: Callable[[], Attempt],
    admit: Callable[[], float],
    jitter: Callable[[], float],
    retry_after: int | None = None,
    scale: float = 1.0,
) -> RequestTrace:
    """Play one admitted request (it holds a worker) through the retry policy.

    `attempt()` draws the upstream's next answer; `admit()` takes a limiter token and returns
    the time it becomes usable (a token bucket's reservation); `scale` multiplies every
    retry wait (1.0: real seconds; the sandbox shortens them).
    """
    trace = RequestTrace(start)
    events = trace.events
    t, delay = start, 0.0
    for n in range(max_retries + 1):
        t += delay
        waited = max(0.0, admit() - t)
        t += waited
        events.append(Event(t, "wait", value=waited))
        if n > 0:
            events.append(Event(t, "retry", "retry"))
        got = attempt()
        trace.attempts += 1
        t += got.seconds
        rule = RULES[got.answer]
        if rule.error_type is not None:
            events.append(Event(t, "upstream_error", rule.error_type))
        if rule.feeds_limiter:
            events.append(Event(t, "limiter_429"))
        if not rule.retried or n == max_retries:
            trace.rule, trace.status, trace.end = rule, rule.status, t
            if got.answer is Answer.OK:
                events.append(Event(t, "limiter_ok"))
            return trace
        reason = rule.retry_reason or ""
        if got.answer is Answer.RATE_LIMITED and retry_after:
            # The unknown class waits out Retry-After before it counts the retry.
            events.append(Event(t + retry_after * scale, "retry_reason", reason))
        else:
            events.append(Event(t, "retry_reason", reason))
        delay = retry_delay(got.answer, n + 1, retry_after, jitter()) * scale
    raise AssertionError("unreachable: the last attempt always ends the request")
