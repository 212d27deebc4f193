"""Fault injection for simulated zai-proxy pods: upstream 502s, 429s and latency per Deployment."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field, replace
from typing import Any

_Z95 = 1.6448536269514722  # standard normal 95th percentile


@dataclass(frozen=True)
class Latency:
    """Lognormal upstream latency given by its median and 95th percentile, in seconds."""

    median: float = 0.05
    p95: float = 0.15

    def __post_init__(self) -> None:
        if self.median <= 0 or self.p95 < self.median:
            raise ValueError(f"need 0 < median <= p95, got {self.median}, {self.p95}")

    def sample(self, rng: random.Random) -> float:
        """Draw one latency."""
        if self.p95 == self.median:
            return self.median
        sigma = math.log(self.p95 / self.median) / _Z95
        return rng.lognormvariate(math.log(self.median), sigma)


@dataclass(frozen=True)
class FaultProfile:
    """What the upstream does to one Deployment's requests.

    `error_502` and `upstream_429` are probabilities of the *final* outcome (after the
    proxy's retries): they are what `zai_proxy_requests_total` ratios converge to.
    """

    error_502: float = 0.0
    upstream_429: float = 0.0
    latency: Latency = field(default_factory=Latency)

    def __post_init__(self) -> None:
        for name in ("error_502", "upstream_429"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a probability, got {value}")
        if self.error_502 + self.upstream_429 > 1.0:
            raise ValueError("error_502 + upstream_429 must not exceed 1")


class FaultProfiles:
    """Fault profiles per (namespace, Deployment), changeable while traffic runs."""

    def __init__(self, default: FaultProfile | None = None) -> None:
        self.default = default or FaultProfile()
        self._profiles: dict[tuple[str, str], FaultProfile] = {}

    def get(self, namespace: str, deployment: str) -> FaultProfile:
        """Profile in force for a Deployment (the default when none was set)."""
        return self._profiles.get((namespace, deployment), self.default)

    def set(self, namespace: str, deployment: str, profile: FaultProfile) -> None:
        """Replace a Deployment's profile; takes effect on the next request."""
        self._profiles[(namespace, deployment)] = profile

    def update(self, namespace: str, deployment: str, **changes: Any) -> FaultProfile:
        """Change some fields of a Deployment's profile and return the new profile."""
        profile = replace(self.get(namespace, deployment), **changes)
        self.set(namespace, deployment, profile)
        return profile

    def clear(self, namespace: str, deployment: str) -> None:
        """Go back to the default profile."""
        self._profiles.pop((namespace, deployment), None)
