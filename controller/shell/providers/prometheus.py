"""The Prometheus analysis provider: compiled PromQL -> `Sample`s, never an exception.

Queries go through `controller.shell.providers.promclient.PrometheusClient` (aiohttp), which holds
the rules that keep an evaluation bounded however Prometheus misbehaves: one deadline per
call (``measure()``/``capacity()``/``query()`` each get ``settings.timeout`` in total, retries
included), one retry layer (tenacity; transient failures only) and bounded concurrency.

Failures become ``Sample(None, error=...)`` naming what failed (HTTP status and Prometheus'
``errorType``, timeout, connection refused, ...) and the query. An empty result or NaN (0/0:
no traffic in the window) is no data, ``Sample(None)``. An empty request count is 0 requests,
so ``minRequests`` makes such a metric inconclusive rather than letting it pass.

Shared queries (`controller.core.analysis.grouping`): a shareable source is asked per pod and folded
in Python. Called with ``tick`` (the runner's aligned schedule), the query is the namespace-wide
one, and every rollout asking for it at the same tick gets the one answer - a single HTTP
request per (template, namespace, window, tick). A failed group query is an error for every
member. Without ``tick`` (an out-of-schedule evaluation) the rollout's own pods are queried in
the same per-pod form, so both give identical numbers.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog

from controller.core.analysis.evaluate import Measurement, Sample
from controller.core.analysis.grouping import (
    ByOwner,
    GroupedQuery,
    PerPod,
    by_owner,
    fold,
    grouped_for,
    shareable,
    side_deployments,
)
from controller.core.analysis.templates import CompiledQuery, QueryContext
from controller.core.config.model import (
    Analysis,
    CapacityGate,
    PrometheusSettings,
    Rollout,
    Side,
    Source,
)
from controller.shell.providers.promclient import (
    DEFAULT_ATTEMPTS,
    DEFAULT_MAX_CONCURRENCY,
    PrometheusClient,
    QueryFailed,
)

log = structlog.get_logger(__name__)


def _labels(item: Any) -> str:
    metric = item.get("metric", {}) if isinstance(item, dict) else {}
    return "{" + ",".join(f'{k}="{v}"' for k, v in sorted(metric.items())) + "}"


def single_value(result: Any) -> float | None:
    """The one number in an instant query's ``data.result``; None for no data (empty or NaN).

    QueryFailed (not transient) when the result is not one number: several series, a range
    vector, or a value that is not a float.
    """
    if isinstance(result, list) and len(result) == 2 and isinstance(result[0], int | float):
        raw = result[1]  # scalar or string result: [time, "value"]
    elif isinstance(result, list):
        if not result:
            return None
        if any(not isinstance(r, dict) or "value" not in r for r in result):
            raise QueryFailed(
                "expected an instant vector or scalar, got a range vector", transient=False
            )
        if len(result) > 1:
            shown = ", ".join(_labels(r) for r in result[:3])
            more = ", ..." if len(result) > 3 else ""
            raise QueryFailed(
                f"expected one series, got {len(result)}: {shown}{more} "
                "(aggregate the query, e.g. sum(...))",
                transient=False,
            )
        raw = result[0]["value"][1]
    else:
        raise QueryFailed(f"unexpected result {str(result)[:200]}", transient=False)
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise QueryFailed(f"result {raw!r} is not a number", transient=False) from None
    return None if math.isnan(value) else value


@dataclass(frozen=True)
class _Outcome:
    value: float | None
    error: str | None = None


@dataclass(frozen=True)
class _PerPodOutcome:
    values: ByOwner  # indexed once, read by every member
    error: str | None = None


def per_pod(result: Any) -> PerPod:
    """An instant vector grouped ``by (pod)`` or ``by (pod, le)`` as ``{(pod, le): value}``."""
    if not isinstance(result, list) or any(
        not isinstance(r, dict) or "value" not in r for r in result
    ):
        raise QueryFailed(f"expected an instant vector, got {str(result)[:200]}", transient=False)
    out: dict[tuple[str, str], float] = {}
    for item in result:
        metric = item.get("metric") or {}
        try:
            value = float(item["value"][1])
        except (TypeError, ValueError, IndexError):
            raise QueryFailed(
                f"result {item['value']!r} is not a number", transient=False
            ) from None
        out[(str(metric.get("pod", "")), str(metric.get("le", "")))] = value
    return out


class PrometheusProvider:
    """`Provider` backed by Prometheus instant queries.

    `at` fixes the evaluation time: it is read once per ``measure()``/``capacity()`` and sent
    as ``time=`` with each of its queries (tests use it with backfilled data). Without it
    Prometheus evaluates at its own "now", the right clock for its data (ours may be skewed).
    The queries of one call run concurrently within milliseconds of each other, so canary and
    stable are still compared over the same window.
    """

    # Whether shareable sources are asked per pod (module doc). `ptc backtest` binds sides to
    # other pods and replays recorded queries, so its subclass keeps the compiled ones.
    shares_queries = True

    def __init__(
        self,
        settings: PrometheusSettings,
        *,
        at: Callable[[], datetime] | None = None,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        attempts: int = DEFAULT_ATTEMPTS,
        client: PrometheusClient | None = None,
    ) -> None:
        self.settings = settings
        self.client = client or PrometheusClient(
            settings, max_concurrency=max_concurrency, attempts=attempts
        )
        self.url = self.client.url
        self.timeout = self.client.timeout
        self._at = at
        # The newest tick's answer per shared query (a late member of an older tick asks on
        # its own): one entry per distinct group query, however many rollouts share it.
        self._shared: dict[str, tuple[float, asyncio.Task[_PerPodOutcome]]] = {}

    # -- the Provider protocol ------------------------------------------------------------

    async def measure(
        self, rollout: Rollout, analysis: Analysis, *, tick: datetime | None = None
    ) -> dict[str, Measurement]:
        """Canary (and, with ``compare``, stable) samples for every metric, in parallel."""
        call = self._call(rollout, analysis.window, tick)

        async def one(metric_index: int) -> Measurement:
            metric = analysis.metrics[metric_index]
            sides = [Side.CANARY] + ([Side.STABLE] if metric.compare is not None else [])
            samples = await asyncio.gather(
                *(self._sample(call, metric, side, metric.sample_query) for side in sides)
            )
            return Measurement(metric.name, samples[0], samples[1] if len(samples) > 1 else None)

        results = await asyncio.gather(*(one(i) for i in range(len(analysis.metrics))))
        return {m.metric: m for m in results}

    async def capacity(
        self,
        rollout: Rollout,
        gate: CapacityGate,
        window: timedelta,
        *,
        tick: datetime | None = None,
    ) -> tuple[Sample, Sample]:
        """Canary capacity (canary side) and Service demand (service side), in parallel."""
        call = self._call(rollout, window, tick)
        capacity, demand = await asyncio.gather(
            self._sample(call, gate.capacity, Side.CANARY, None),
            self._sample(call, gate.demand, Side.SERVICE, None),
        )
        return capacity, demand

    async def close(self) -> None:
        """Close the HTTP session; queries still waiting end with an error."""
        # Shared queries are not cancelled: their members would get a CancelledError instead
        # of a sample. Closing the client ends them at once with "provider is closed".
        self._shared.clear()
        await self.client.close()

    def query_context(self, rollout: Rollout, window: timedelta) -> QueryContext:
        """The templates' variables for one call (``ptc backtest`` binds other pods here)."""
        return QueryContext(rollout, window)

    # -- one query --------------------------------------------------------------------------

    async def query(self, promql: str) -> Sample:
        """Evaluate one instant query that yields one number (no request count)."""
        outcome = await self._query(promql, self.client.deadline(), self._time_params())
        return Sample(outcome.value, error=outcome.error)

    def _time_params(self) -> dict[str, str]:
        if self._at is None:
            return {}
        return {"time": f"{self._at().timestamp():.3f}"}

    def _call(self, rollout: Rollout, window: timedelta, tick: datetime | None) -> _Call:
        return _Call(
            self.query_context(rollout, window),
            self.client.deadline(),
            self._time_params(),
            tick.timestamp() if tick is not None else None,
        )

    async def _sample(
        self, call: _Call, source: Source, side: Side, sample_query: str | None
    ) -> Sample:
        """One side of one source: its value and, where the source has one, its request count."""
        context = call.context
        if (
            self.shares_queries
            and type(context) is QueryContext
            and shareable(context.rollout.analysis.selectors, source)
        ):
            return await self._grouped_sample(call, source, side)
        try:
            compiled: CompiledQuery = context.compile(source, side, sample_query)
        except ValueError as exc:  # TemplateError included; config validation should prevent it
            return Sample(None, error=f"cannot build the {side} query: {exc}")
        queries = [compiled.value] + ([compiled.sample] if compiled.sample else [])
        outcomes = await asyncio.gather(
            *(self._query(q, call.deadline, call.params) for q in queries)
        )
        value = outcomes[0]
        if value.error is not None:
            return Sample(None, error=value.error)
        if compiled.sample is None:
            return Sample(value.value)
        count = outcomes[1]
        if count.error is not None:
            # Without a request count minRequests cannot be checked: never let that pass.
            return Sample(value.value, error=f"request count: {count.error}")
        # No series matched the count: that is zero requests, not unknown.
        return Sample(value.value, requests=count.value if count.value is not None else 0.0)

    async def _grouped_sample(self, call: _Call, source: Source, side: Side) -> Sample:
        rollout = call.context.rollout
        grouped: GroupedQuery = grouped_for(
            rollout, source, side, call.context.variables(side)["window"], call.tick is not None
        )
        queries = grouped.queries()
        outcomes = dict(
            zip(
                queries,
                await asyncio.gather(*(self._per_pod(q, call) for q in queries)),
                strict=True,
            )
        )
        for key in (grouped.numerator, grouped.value):
            if key is not None and outcomes[key].error is not None:
                return Sample(None, error=outcomes[key].error)
        count_error = outcomes[grouped.sample].error if grouped.sample is not None else None
        answers = {q: o.values for q, o in outcomes.items()}
        if count_error is not None:
            answers[grouped.sample or ""] = {}
        value, requests = fold(grouped, answers, side_deployments(rollout, side))
        if count_error is not None:
            return Sample(value, error=f"request count: {count_error}")
        return Sample(value, requests=requests)

    async def _per_pod(self, promql: str, call: _Call) -> _PerPodOutcome:
        """A per-pod query's answer; shared with every caller of the same tick."""
        held = self._shared.get(promql)
        if call.tick is None or (held is not None and held[0] > call.tick):
            # Out of schedule, or a late member of an older tick: this call's own query (asked
            # once however many of its metrics and sides need it).
            task = call.own.get(promql)
            if task is None:
                task = call.own[promql] = asyncio.ensure_future(
                    self._ask_per_pod(promql, call.deadline, call.params)
                )
            return await asyncio.shield(task)
        if held is None or held[0] != call.tick:
            task = asyncio.get_running_loop().create_task(
                self._ask_per_pod(promql, call.deadline, call.params),
                name="prometheus-shared-query",
            )
            held = self._shared[promql] = (call.tick, task)
        # shield: a member cancelled (its rollout stopped) must not cancel the others' query
        return await asyncio.shield(held[1])

    async def _ask_per_pod(
        self, promql: str, deadline: float, params: dict[str, str]
    ) -> _PerPodOutcome:
        at = float(params["time"]) if "time" in params else None
        try:
            answer = per_pod(await self.client.instant(promql, deadline, at))
            return _PerPodOutcome(by_owner(answer))
        except QueryFailed as exc:
            return _PerPodOutcome({}, f"{exc.reason} (query: {promql})")

    async def _query(self, promql: str, deadline: float, params: dict[str, str]) -> _Outcome:
        """Run one query with retries until `deadline`; the outcome, never an exception."""
        at = float(params["time"]) if "time" in params else None
        try:
            result = await self.client.instant(promql, deadline, at)
            return _Outcome(single_value(result))
        except QueryFailed as exc:
            return _Outcome(None, f"{exc.reason} (query: {promql})")


@dataclass(frozen=True)
class _Call:
    """What one measure()/capacity() call shares among its queries."""

    context: QueryContext
    deadline: float
    params: dict[str, str]
    tick: float | None  # the scheduled tick (Unix seconds): the shared form; None: own pods
    own: dict[str, asyncio.Future[_PerPodOutcome]] = field(default_factory=dict)


__all__ = ["PrometheusProvider", "QueryFailed", "per_pod", "single_value"]
