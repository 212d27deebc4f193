"""The template grid (pure): when rollouts judged the same way evaluate, so they share queries.

Every rollout whose analysis compiles from the same sources, selectors and window evaluates at
``epoch + offset + k * interval``, the offset a hash of that template: their calls reach the
provider with the same tick and are answered from one shared query
(`controller.core.analysis.grouping`), while different templates sit at different points of the
interval instead of querying in one burst.
"""

from __future__ import annotations

import hashlib
import math
from datetime import UTC, datetime, timedelta

from controller.core.config.model import SOURCE_KINDS, Analysis

_SOURCE_FIELDS = {*SOURCE_KINDS, "sample_query"}


def template_offset(analysis: Analysis, interval: timedelta) -> timedelta:
    """A stable offset in [0, interval) for the grid of every rollout judged the same way.

    From a hash of what the queries are made of (sources, selectors, window), not of the
    rollout: rollouts of one template tick together and share their queries, while different
    templates spread over the interval instead of querying in one burst.
    """
    parts = [analysis.selectors.model_dump_json(), str(analysis.window.total_seconds())]
    parts += [m.model_dump_json(include=_SOURCE_FIELDS) for m in analysis.metrics]
    for extra in (analysis.capacity_gate, analysis.traffic_share):
        parts.append(extra.model_dump_json() if extra is not None else "-")
    digest = int.from_bytes(hashlib.sha256("\n".join(parts).encode()).digest()[:4], "big")
    return interval * (digest % 1000) / 1000


def next_tick(after: datetime, interval: timedelta, offset: timedelta) -> datetime:
    """The first grid time ``epoch + offset + k * interval`` at or after `after`."""
    step = interval.total_seconds()
    base = after.timestamp() - offset.total_seconds()
    k = math.ceil(round(base / step, 9))  # round: a tick computed from itself stays put
    return datetime.fromtimestamp(k * step + offset.total_seconds(), after.tzinfo or UTC)


__all__ = ["next_tick", "template_offset"]
