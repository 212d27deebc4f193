"""The seed's zai-proxy rollout as a config dict: one builder for the demo, tests and benchmarks.

Each caller states only what it changes (steps, analysis, durations, names); the shape the seed
describes — the shared ``app`` selector, stable without a version label, canary ``v2``, four
replicas shifted one at a time, the zai-proxy preflight metric pack — is written here once.
"""

from __future__ import annotations

from typing import Any

from controller.sandbox.scenarios import NAMESPACE

SERVICE, STABLE, CANARY = "zai-proxy", "zai-proxy", "zai-proxy-v2"
REQUESTS = "zai_proxy_requests_total"


def ratio_metric(
    name: str, status_code: str, *, max_: float, for_: str, compare: bool = False
) -> dict[str, Any]:
    """A counter-ratio metric over zai-proxy's requests with one status code."""
    metric: dict[str, Any] = {
        "name": name,
        "counterRatio": {"metric": REQUESTS, "numerator": {"status_code": status_code}},
        "max": max_,
        "for": for_,
    }
    if compare:  # judged against stable too: a fleet-wide incident holds instead of failing
        metric["compare"] = {"factor": 1.5, "slack": 0.02}
    return metric


def bad_gateway_ratio(max_: float = 0.05, for_: str = "2s") -> dict[str, Any]:
    """The canary's 502 share of requests."""
    return ratio_metric("bad-gateway-ratio", "502", max_=max_, for_=for_)


def rate_limited_ratio(max_: float = 0.10, for_: str = "2s") -> dict[str, Any]:
    """The canary's 429 share of requests, compared against stable."""
    return ratio_metric("rate-limited-ratio", "429", max_=max_, for_=for_, compare=True)


def preflight() -> dict[str, Any]:
    """The zai-proxy pack: build_info from the start, requests once traffic arrives."""
    return {"metrics": {"atStart": ["zai_proxy_build_info"], "lazy": [REQUESTS]}}


def zai_proxy_rollout(
    *, steps: list[dict[str, Any]], analysis: dict[str, Any], **overrides: Any
) -> dict[str, Any]:
    """The seed's rollout (zai-proxy -> zai-proxy-v2 in `devpod`); `overrides` replace keys."""
    spec: dict[str, Any] = {
        "name": "zai-proxy",
        "namespace": NAMESPACE,
        "service": SERVICE,
        "sharedSelector": {"app": "zai-proxy"},
        "stable": {"deployment": STABLE},
        "canary": {"deployment": CANARY, "version": "v2"},
        "replicas": 4,
        "maxSurge": 1,
        "maxUnavailable": 0,
        "steps": steps,
        "analysis": analysis,
        "preflight": preflight(),
    }
    spec.update(overrides)
    return spec
