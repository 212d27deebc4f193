"""What the Service's clients route by: its ready endpoints as kube-proxy last applied them.

In a cluster, a change to an EndpointSlice reaches each node's kube-proxy (and its iptables or
IPVS rules) some tens to hundreds of milliseconds later. Meanwhile clients keep connecting to the
old set — including a pod that has just been deleted and, without a preStop delay, has already
exited. :class:`EndpointPropagation` models that lag: each change of the ready set becomes
visible after a delay drawn uniformly from ``delay`` (changes apply in order, as one kube-proxy
applies them), on an injectable clock. ``delay=(0, 0)`` makes every change visible at once.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable, Sequence


class EndpointPropagation:
    """A lagging view of a Service's ready endpoints; call :meth:`view` with the current set."""

    def __init__(
        self,
        delay: tuple[float, float] = (0.05, 0.3),
        *,
        seed: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        low, high = delay
        if not 0 <= low <= high:
            raise ValueError(f"endpoint delay must be 0 <= low <= high, got {delay}")
        self.delay = (float(low), float(high))
        self._rng = random.Random(seed)
        self._clock = clock
        self._latest: tuple[str, ...] = ()  # the newest set seen in the EndpointSlice
        self._visible: tuple[str, ...] = ()  # what clients route by now
        self._pending: deque[tuple[float, tuple[str, ...]]] = deque()  # (visible at, set)

    def view(self, current: Sequence[str]) -> list[str]:
        """Record the EndpointSlice's ready set now; return the set the clients see now."""
        now = self._clock()
        ips = tuple(current)
        if sorted(ips) != sorted(self._latest):
            self._latest = ips
            low, high = self.delay
            at = now + (self._rng.uniform(low, high) if high > 0 else 0.0)
            if self._pending:
                at = max(at, self._pending[-1][0])  # no change overtakes an earlier one
            self._pending.append((at, ips))
        while self._pending and self._pending[0][0] <= now:
            self._visible = self._pending.popleft()[1]
        return list(self._visible)

    @property
    def next_change_at(self) -> float | None:
        """Clock time at which clients see the next pending change (None: none pending)."""
        return self._pending[0][0] if self._pending else None
