"""Observed traffic share: the canary's share of requests, judged against the desired weight.

Replica ratios are a proxy for traffic share. Long-lived keep-alive connections, uneven clients
and kube-proxy's per-connection balancing can make the real share very different, and analysis
that judges a canary on a sliver of the traffic it should have judges too little. The share is
measured from the proxy's own request counter (canary requests / all requests over the window)
and a step whose share strays more than the tolerance from its weight holds instead of passing.

Pure: no I/O; the analysis runner fetches the two samples.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from controller.core.analysis.evaluate import Sample


@dataclass(frozen=True)
class ShareReading:
    """Requests per second on the canary and on the whole Service over the window."""

    canary: Sample
    service: Sample
    at: datetime | None = None  # when it was measured (the analysis evaluation's time)

    def percent(self) -> float | None:
        """The canary's share of requests in percent; None when it cannot be told.

        Unknown when the Service's rate is missing, failed or zero (no traffic says nothing
        about its split). A canary with no series at all while the Service has traffic has
        received no request yet - its counter is created by its first one - so that is 0 %.
        """
        total = self.service.value
        if self.service.error is not None or total is None or total <= 0:
            return None
        if self.canary.error is not None:
            return None
        canary = self.canary.value if self.canary.value is not None else 0.0
        return max(0.0, min(100.0, 100.0 * canary / total))

    def requests(self) -> float | None:
        """Requests on the whole Service in the window, where the query counted them."""
        return self.service.requests


@dataclass(frozen=True)
class ShareCheck:
    """One judgement of the observed share: within tolerance, off, or not measurable."""

    desired: float
    observed: float | None
    tolerance: float
    reason: str

    @property
    def off(self) -> bool:
        """Whether the observed share is known and outside the tolerance."""
        return self.observed is not None and abs(self.observed - self.desired) > self.tolerance


def check_share(
    desired: float, reading: ShareReading | None, tolerance: float, min_requests: int
) -> ShareCheck:
    """Judge the observed share against `desired` (percent) within `tolerance` (points).

    Too few requests on the Service (below the analysis's ``minRequests``) or no reading is
    "not measurable": the share check then neither holds nor passes anything - the metrics'
    own ``minRequests`` keep a step from passing on too little data.
    """
    observed = reading.percent() if reading is not None else None
    requests = reading.requests() if reading is not None else None
    if observed is None:
        why = "no reading" if reading is None else _unknown(reading)
        return ShareCheck(desired, None, tolerance, f"observed share unknown: {why}")
    if requests is not None and requests < min_requests:
        return ShareCheck(
            desired,
            None,
            tolerance,
            f"observed share not judged: {requests:.0f} requests < minRequests {min_requests}",
        )
    check = ShareCheck(desired, round(observed, 2), tolerance, "")
    if not check.off:
        return ShareCheck(
            desired,
            check.observed,
            tolerance,
            f"canary receives {observed:.1f}% of requests for a {desired:g}% weight "
            f"(within ±{tolerance:g} points)",
        )
    hint = (
        "clients keep old connections to stable?"
        if observed < desired
        else "clients pinned to canary pods?"
    )
    return ShareCheck(
        desired,
        check.observed,
        tolerance,
        f"canary receives {observed:.1f}% of requests for a {desired:g}% weight, outside "
        f"±{tolerance:g} points — {hint}",
    )


def _unknown(reading: ShareReading) -> str:
    for side, sample in (("service", reading.service), ("canary", reading.canary)):
        if sample.error is not None:
            return f"{side} query failed: {sample.error}"
    return "no requests on the Service in the window"


__all__ = ["ShareCheck", "ShareReading", "check_share"]
