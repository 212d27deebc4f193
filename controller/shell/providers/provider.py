"""The analysis provider seam: what the runner asks of a metrics backend.

Providers fetch, the evaluator judges (`controller.core.analysis.evaluate`). A provider never raises
for a query problem: a failed query becomes ``Sample(None, error="...")`` naming what failed and
the query, an empty result ``Sample(None)`` ("no data", never pass), and a result with several
series where one number was expected is an error naming the series count. Only cancellation
and programming errors propagate.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Protocol

from controller.core.analysis.evaluate import Measurement, Sample
from controller.core.config.model import Analysis, CapacityGate, Rollout


class Provider(Protocol):
    """A metrics backend for the analysis runner (Prometheus, or a fake in tests)."""

    async def measure(
        self, rollout: Rollout, analysis: Analysis, *, tick: datetime | None = None
    ) -> dict[str, Measurement]:
        """One `Measurement` per metric of `analysis`, keyed by metric name.

        The canary side is always measured; the stable side only when the metric sets
        ``compare``. ``Sample.requests`` comes from the metric's request-count query where it
        has one. `tick` is the scheduled evaluation time the call belongs to (None: out of
        schedule): calls of the same tick may share their queries.
        """
        ...

    async def capacity(
        self,
        rollout: Rollout,
        gate: CapacityGate,
        window: timedelta,
        *,
        tick: datetime | None = None,
    ) -> tuple[Sample, Sample]:
        """(canary capacity, demand on the whole Service), both in requests per second."""
        ...

    async def close(self) -> None:
        """Release connections and worker threads; the provider is unusable afterwards."""
        ...


__all__ = ["Provider"]
