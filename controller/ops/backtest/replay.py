"""The controller's own Prometheus provider, answering from range data instead of the network.

`ReplayProvider` *is* a `PrometheusProvider`: ``measure()`` and ``capacity()`` - which metrics
are measured on which side, how each template is compiled, how a value and its request count
become a `Sample`, what counts as no data - are the controller's code, unchanged. Only the one
place that sends a query is replaced:

* **recording** (before any data is fetched): every query is noted and answered "no data", so
  one ``measure()``/``capacity()`` lists exactly the queries the runner would send;
* **replaying**: a query is answered from the `RangeTable` at the provider's evaluation time
  (``at``, the tick), shaped as an instant query's result and read by the same
  `single_value`, so several series or NaN mean what they mean in the controller.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from controller.core.analysis.templates import QueryContext
from controller.core.config.model import PrometheusSettings, Rollout
from controller.ops.backtest.fetch import RangeTable
from controller.ops.backtest.selectors import Bindings, BoundContext
from controller.shell.providers.prometheus import (
    PrometheusProvider,
    QueryFailed,
    _Outcome,
    single_value,
)


class ReplayProvider(PrometheusProvider):
    """`PrometheusProvider` whose queries are answered from a `RangeTable` (or recorded)."""

    # Sides may be bound to other pods (`BoundContext`): the compiled per-side queries, always.
    shares_queries = False

    def __init__(
        self, settings: PrometheusSettings, at: Callable[[], datetime], bindings: Bindings
    ) -> None:
        # One worker: the inherited HTTP machinery is never used, only closed.
        super().__init__(settings, at=at, max_concurrency=1, attempts=1)
        self.bindings = bindings
        self.table: RangeTable | None = None  # None: recording
        self.recorded: list[str] = []

    def query_context(self, rollout: Rollout, window: timedelta) -> QueryContext:
        """The runner's variables, with the sides the user bound to other pods."""
        return BoundContext(rollout, window, self.bindings)

    def replay(self, table: RangeTable) -> None:
        """Answer from `table` from now on."""
        self.table = table

    async def _query(self, promql: str, deadline: float, params: dict[str, str]) -> _Outcome:
        if self.table is None:
            if promql not in self.recorded:
                self.recorded.append(promql)
            return _Outcome(None)
        error = self.table.errors.get(promql)
        if error is not None:
            return _Outcome(None, f"{error} (query: {promql})")
        at_ms = round(float(params["time"]) * 1000)
        try:
            return _Outcome(single_value(self.table.at(promql, at_ms)))
        except QueryFailed as exc:
            return _Outcome(None, f"{exc.reason} (query: {promql})")


__all__ = ["ReplayProvider"]
