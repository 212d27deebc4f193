"""Upstream fault injection for simulated zai-proxy pods: what z.ai answers, per Deployment.

Faults are injected where production has them, at the *upstream*: every attempt a simulated
proxy makes draws one answer from its Deployment's profile, and the proxy's own retry policy
(`controller.sandbox.retries`) turns the answers into what the client gets and what /metrics
counts - as the real binary does (research note on the real binary, sections 5 and 7). So an
upstream 502 reaches the client 1:1, while an upstream 429 without a quota code is retried up to
MAX_RETRIES times and mostly hidden from the client.

The probabilities are per upstream *attempt*:

============== ====================================================== ==========================
field          upstream answer                                        the proxy
============== ====================================================== ==========================
error_502      HTTP 502                                               passes it through, no retry
error_500      HTTP 500                                               passes it through, no retry
upstream_429   429 without a known business code                      retries; feeds the limiter
frequency_429  429 code 1303 (frequency)                              retries (jittered); feeds
concurrency_429 429 code 1302 (concurrency)                           retries; limiter not fed
quota_429      429 code 1308 (quota window exhausted)                 no retry; limiter not fed
dropped        connection closed without a response                   retries; 502 at the end
truncated      200 with a truncated JSON body                         retries; 502 at the end
============== ====================================================== ==========================

`retry_after` (whole seconds) is the Retry-After header every 429 carries (None: none).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from typing import Any

_Z95 = 1.6448536269514722  # standard normal 95th percentile
# How long an upstream takes to refuse (a 429, a 5xx): z.ai's error answers are quick.
ERROR_ANSWER_SECONDS = 0.01


class Answer(StrEnum):
    """One upstream answer to one attempt."""

    OK = "ok"
    ERROR_502 = "502"
    ERROR_500 = "500"
    RATE_LIMITED = "429"  # no business code the proxy knows: class "unknown"
    FREQUENCY = "429/1303"
    CONCURRENCY = "429/1302"
    QUOTA = "429/1308"
    DROPPED = "dropped"
    TRUNCATED = "truncated"
    NOT_FOUND = "404"  # a path the upstream API does not have (never drawn: see UPSTREAM_PATHS)


# What the simulated z.ai API serves (under ZAI_TARGET_URL); any other path is a 404 there,
# which the proxy passes through - a probe of a wrong health path on a real zai-proxy pod gets
# the upstream's 404 and creates a requests_total{status_code="404"} series too.
UPSTREAM_PATHS = frozenset(
    {"/v1/messages", "/v1/messages/count_tokens", "/v1/chat/completions", "/v1/models"}
)


# FaultProfile field -> the answer it draws, in draw order.
ANSWER_FIELDS: dict[str, Answer] = {
    "error_502": Answer.ERROR_502,
    "error_500": Answer.ERROR_500,
    "upstream_429": Answer.RATE_LIMITED,
    "frequency_429": Answer.FREQUENCY,
    "concurrency_429": Answer.CONCURRENCY,
    "quota_429": Answer.QUOTA,
    "dropped": Answer.DROPPED,
    "truncated": Answer.TRUNCATED,
}


@dataclass(frozen=True)
class Latency:
    """Lognormal upstream latency given by its median and 95th percentile, in seconds."""

    median: float = 0.05
    p95: float = 0.15

    def __post_init__(self) -> None:
        if not (0 < self.median <= self.p95) or math.isinf(self.p95):
            raise ValueError(f"need 0 < median <= p95 (finite), got {self.median}, {self.p95}")

    def sample(self, rng: random.Random) -> float:
        """Draw one latency."""
        if self.p95 == self.median:
            return self.median
        sigma = math.log(self.p95 / self.median) / _Z95
        return rng.lognormvariate(math.log(self.median), sigma)


@dataclass(frozen=True)
class Attempt:
    """What the upstream did with one attempt: its answer and how long it took."""

    answer: Answer
    seconds: float


@dataclass(frozen=True)
class FaultProfile:
    """What the upstream does to one Deployment's attempts (probabilities per attempt)."""

    error_502: float = 0.0
    error_500: float = 0.0
    upstream_429: float = 0.0
    frequency_429: float = 0.0
    concurrency_429: float = 0.0
    quota_429: float = 0.0
    dropped: float = 0.0
    truncated: float = 0.0
    retry_after: int | None = None
    latency: Latency = field(default_factory=Latency)

    def __post_init__(self) -> None:
        total = 0.0
        for name in ANSWER_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{name} must be a probability, got {value!r}")
            if not 0.0 <= value <= 1.0:  # also refuses NaN
                raise ValueError(f"{name} must be a probability, got {value}")
            total += value
        if total > 1.0 + 1e-9:
            raise ValueError(
                f"the fault probabilities ({', '.join(ANSWER_FIELDS)}) must not exceed 1 in "
                f"total, got {total:g}"
            )
        ra = self.retry_after
        if ra is not None and (isinstance(ra, bool) or not isinstance(ra, int) or ra <= 0):
            raise ValueError(f"retry_after must be a positive whole number of seconds, got {ra!r}")

    @property
    def faulty(self) -> bool:
        """Whether any attempt can go wrong."""
        return any(getattr(self, name) > 0 for name in ANSWER_FIELDS)

    def draw(self, rng: random.Random, path: str = "/v1/messages") -> Attempt:
        """One attempt's answer and duration, for a request to `path`."""
        if path not in UPSTREAM_PATHS:
            return Attempt(Answer.NOT_FOUND, ERROR_ANSWER_SECONDS)
        u = rng.random()
        for name, answer in ANSWER_FIELDS.items():
            p = getattr(self, name)
            if u < p:
                if answer is Answer.DROPPED:
                    return Attempt(answer, 0.0)
                if answer is Answer.TRUNCATED:
                    return Attempt(answer, self.latency.sample(rng))
                return Attempt(answer, ERROR_ANSWER_SECONDS)
            u -= p
        return Attempt(Answer.OK, self.latency.sample(rng))

    def as_json(self) -> dict[str, Any]:
        """The profile with the control endpoint's camelCase names."""
        out: dict[str, Any] = {_camel(f.name): getattr(self, f.name) for f in fields(self)}
        latency = out.pop("latency")
        out["latencyMedian"], out["latencyP95"] = latency.median, latency.p95
        return out


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


# Control-endpoint JSON name -> FaultProfile field (error_502 -> error502, upstream_429 -> ...).
JSON_FIELDS: dict[str, str] = {_camel(name): name for name in (*ANSWER_FIELDS, "retry_after")}


class FaultProfiles:
    """Fault profiles per (namespace, Deployment), changeable while traffic runs."""

    def __init__(self, default: FaultProfile | None = None) -> None:
        self.default = default or FaultProfile()
        self._profiles: dict[tuple[str, str], FaultProfile] = {}

    def get(self, namespace: str, deployment: str) -> FaultProfile:
        """Profile in force for a Deployment (the default when none was set)."""
        return self._profiles.get((namespace, deployment), self.default)

    def set(self, namespace: str, deployment: str, profile: FaultProfile) -> None:
        """Replace a Deployment's profile; takes effect on the next attempt."""
        self._profiles[(namespace, deployment)] = profile

    def update(self, namespace: str, deployment: str, **changes: Any) -> FaultProfile:
        """Change some fields of a Deployment's profile and return the new profile."""
        profile = replace(self.get(namespace, deployment), **changes)
        self.set(namespace, deployment, profile)
        return profile

    def clear(self, namespace: str, deployment: str) -> None:
        """Go back to the default profile."""
        self._profiles.pop((namespace, deployment), None)
