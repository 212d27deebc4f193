"""A backfilled hour of zai-proxy traffic with a known incident, for `ptc backtest` tests.

Every pod serves 150 requests per 15 s (10 rps); samples every 15 s from T - 30m to T + 30m,
T = 2026-01-01T00:00:00Z. At T (the increment that ends at the sample at T) 502s jump from 2%
to 60% where a scenario says so. Counters are integers, so every ratio is exact.

Namespaces (each scenario is the others' distractor):

* ``bt-incident``: only v2 (canary) goes to 60% 502; v1 stays at 2%.
* ``bt-fleet``: v1 and v2 both go to 60% 502 (an upstream incident).
* ``bt-renamed``: as ``bt-incident``, but the canary pods belong to ``zai-proxy-canary``.

v2's rate limit is 12 rps until T - 5m and 20 rps from then on (a cold limiter that warmed up),
so the capacity gate for 50% (30 rps x 0.5 x 1.2 = 18 needed) opens at T - 5m; for 25% (9
needed) it would have been open all along.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

T = 1_767_225_600
AT = datetime.fromtimestamp(T, UTC)
SAMPLE_S = 15
START, END = T - 30 * 60, T + 30 * 60
LIMIT_UP = T - 5 * 60

STABLE_PODS = ("zai-proxy-7d9f8b6c5-abcde", "zai-proxy-7d9f8b6c5-fghij")
CANARY_POD = "zai-proxy-v2-5f6b7c8d9-klmno"
RENAMED_CANARY_POD = "zai-proxy-canary-6c7d8e9f5-pqrst"

NORMAL = {"200": 144, "429": 3, "502": 3}  # per 15 s: 429 2%, 502 2%
STABLE_NORMAL = {"200": 141, "429": 6, "502": 3}  # 429 4%, 502 2%
INCIDENT = {"200": 57, "429": 3, "502": 90}  # 502 60%
BUCKETS = {"0.1": 4, "0.25": 7, "0.5": 9, "1.0": 10, "2.5": 10, "+Inf": 10}  # per second


@dataclass(frozen=True)
class Pod:
    """One pod: requests per 15 s by status, before and from T on; a limit step or none."""

    namespace: str
    name: str
    before: dict[str, int]
    after: dict[str, int]
    canary: bool = False


def pods() -> list[Pod]:
    """Every pod of every scenario."""
    out = []
    for ns, canary_after, stable_after, canary_pod in (
        ("bt-incident", INCIDENT, STABLE_NORMAL, CANARY_POD),
        ("bt-fleet", INCIDENT, INCIDENT, CANARY_POD),
        ("bt-renamed", INCIDENT, STABLE_NORMAL, RENAMED_CANARY_POD),
    ):
        out += [Pod(ns, p, STABLE_NORMAL, stable_after) for p in STABLE_PODS]
        out.append(Pod(ns, canary_pod, NORMAL, canary_after, canary=True))
    return out


def _labels(**labels: str) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


def openmetrics(start: int = START, end: int = END) -> str:
    """The data set as OpenMetrics text (families contiguous, samples in time order)."""
    times = list(range(start, end + 1, SAMPLE_S))
    counters, gauges, histograms = [], [], []
    for pod in pods():
        base = {"namespace": pod.namespace, "pod": pod.name}
        for status in ("200", "429", "502"):
            labels = _labels(
                method="POST",
                **base,
                path="/v1/chat/completions",
                status_code=status,
                variant="production",
            )
            value = 1000
            for t in times:
                if t > start:  # the increment that ends at t
                    value += (pod.after if t >= T else pod.before)[status]
                counters.append(f"zai_proxy_requests_total{labels} {value} {t}")
        limit_labels = _labels(**base)
        timed = {**base, "status_code": "200"}  # the pack's p95 reads answered 2xx
        for t in times:
            limit = 20.0 if not pod.canary or t >= LIMIT_UP else 12.0
            gauges.append(f"zai_proxy_rate_limit_requests_per_second{limit_labels} {limit} {t}")
        for i, t in enumerate(times):
            for le, per_second in BUCKETS.items():
                count = 500 + per_second * SAMPLE_S * i
                bucket = _labels(**timed, le=le)
                histograms.append(f"zai_proxy_request_duration_seconds_bucket{bucket} {count} {t}")
            total = 500 + BUCKETS["+Inf"] * SAMPLE_S * i
            histograms.append(
                f"zai_proxy_request_duration_seconds_count{_labels(**timed)} {total} {t}"
            )
            histograms.append(
                f"zai_proxy_request_duration_seconds_sum{_labels(**timed)} {total * 0.4} {t}"
            )
    return "\n".join(
        [
            "# TYPE zai_proxy_requests counter",
            *counters,
            "# TYPE zai_proxy_rate_limit_requests_per_second gauge",
            *gauges,
            "# TYPE zai_proxy_request_duration_seconds histogram",
            *histograms,
            "# EOF",
            "",
        ]
    )


def at(seconds_from_t: float) -> datetime:
    """T + `seconds_from_t` as an aware datetime."""
    return AT + timedelta(seconds=seconds_from_t)
