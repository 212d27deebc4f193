"""The Prometheus analysis provider: compiled PromQL -> `Sample`s, never an exception.

prometheus-api-client is synchronous (requests), so each query runs on a small private thread
pool. Three rules keep an evaluation bounded however Prometheus misbehaves:

* **One deadline per call.** ``measure()``/``capacity()``/``query()`` each get
  ``settings.timeout`` in total, retries included. Every HTTP request is sent with the time
  left as its requests timeout (connect and read), computed in the worker thread when the
  request starts, so a request queued behind others cannot overshoot. A cancelled
  ``asyncio.wait_for`` would not stop the thread; the requests timeout does.
* **One retry layer.** The client's own urllib3 retries are switched off (``Retry(total=0)``
  on the session); tenacity retries transient failures only - connection errors, timeouts,
  HTTP 5xx, 408 and 429 - at most ``attempts`` times with exponential backoff (0.2 s, 0.4 s,
  ... capped at 1 s, plus up to 0.1 s jitter), and never starts an attempt it could not finish
  before the deadline. HTTP 4xx (``bad_data``, ``execution``) is final at once.
* **Bounded concurrency.** At most ``max_concurrency`` queries are in flight; the rest wait
  (and their wait counts against the same deadline).

Failures become ``Sample(None, error=...)`` naming what failed (HTTP status and Prometheus'
``errorType``, timeout, connection refused, ...) and the query. An empty result or NaN (0/0:
no traffic in the window) is no data, ``Sample(None)``. An empty request count is 0 requests,
so ``minRequests`` makes such a metric inconclusive rather than letting it pass.
"""

from __future__ import annotations

import ast
import asyncio
import json
import math
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import requests
import structlog
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from requests.adapters import HTTPAdapter
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    wait_exponential,
    wait_random,
)
from urllib3.util.retry import Retry

from controller.core.analysis.evaluate import Measurement, Sample
from controller.core.analysis.templates import CompiledQuery, QueryContext
from controller.core.config.model import (
    Analysis,
    CapacityGate,
    PrometheusSettings,
    Rollout,
    Side,
    Source,
)

log = structlog.get_logger(__name__)

DEFAULT_ATTEMPTS = 3
DEFAULT_MAX_CONCURRENCY = 8
BACKOFF_INITIAL = 0.2  # seconds before the first retry; doubles per retry
BACKOFF_MAX = 1.0  # a retry never waits longer than this
BACKOFF_JITTER = 0.1
# Don't start an attempt with less time than this left: it could only time out.
MIN_ATTEMPT_SECONDS = 0.05
# How long past the deadline the event loop waits for a worker before giving up on it. The
# requests timeout normally ends the worker first; this only matters for a server that trickles
# bytes (requests' read timeout is per read, not per response).
BACKSTOP_GRACE = 1.0

# urllib3 retries nothing: tenacity is the one retry layer. `read=False` re-raises read errors
# as they are instead of wrapping them in MaxRetryError, as requests' own default does.
_NO_RETRY = Retry(total=0, read=False, redirect=False, raise_on_status=False)
_TRANSIENT_STATUS = frozenset({408, 429})
_API_ERROR = re.compile(r"HTTP Status Code (\d+) \((.*)\)\Z", re.DOTALL)


class QueryFailed(Exception):
    """One query attempt failed; `transient` failures are worth another attempt."""

    def __init__(self, reason: str, *, transient: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.transient = transient


def _is_transient(exc: BaseException) -> bool:
    return isinstance(exc, QueryFailed) and exc.transient


class _BearerTokenFile(requests.auth.AuthBase):
    """Sets ``Authorization: Bearer <token>`` from a file read at every request.

    Kubernetes rotates projected service-account tokens in place; reading per request (a few
    small reads per evaluation) means a rotated token is picked up without any cache logic.
    """

    def __init__(self, path: str) -> None:
        self.path = path

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        try:
            token = Path(self.path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise QueryFailed(
                f"cannot read bearer token file {self.path}: {reason}", transient=False
            ) from exc
        if not token:
            raise QueryFailed(f"bearer token file {self.path} is empty", transient=False)
        request.headers["Authorization"] = f"Bearer {token}"
        return request


def _root_cause(exc: BaseException) -> str:
    """The innermost OS-level reason in a requests/urllib3 chain (e.g. 'connection refused')."""
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and current.strerror:
            return current.strerror[:1].lower() + current.strerror[1:]
        for nested in (current.__cause__, current.__context__, getattr(current, "reason", None)):
            if isinstance(nested, BaseException):
                stack.append(nested)
        stack.extend(a for a in current.args if isinstance(a, BaseException))
    return str(exc)[:300]


def _api_failure(exc: PrometheusApiClientException) -> QueryFailed:
    """Translate the client's non-200 exception (status and body only live in its message)."""
    text = str(exc)
    match = _API_ERROR.match(text)
    if match is None:
        return QueryFailed(f"Prometheus API error: {text[:300]}", transient=False)
    status = int(match.group(1))
    body = match.group(2)
    try:
        raw = ast.literal_eval(body)
        body = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    except (ValueError, SyntaxError):
        pass
    try:
        payload = json.loads(body)
        detail = f"{payload['errorType']}: {payload['error']}"
    except (ValueError, KeyError, TypeError):
        detail = body.strip()[:300] or "(empty body)"
    transient = status >= 500 or status in _TRANSIENT_STATUS
    return QueryFailed(f"HTTP {status} {detail}", transient=transient)


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


class PrometheusProvider:
    """`Provider` backed by prometheus-api-client (instant queries, ``custom_query``).

    `at` fixes the evaluation time: it is read once per ``measure()``/``capacity()`` and sent
    as ``time=`` with each of its queries (tests use it with backfilled data). Without it
    Prometheus evaluates at its own "now", the right clock for its data (ours may be skewed).
    The queries of one call run concurrently within milliseconds of each other, so canary and
    stable are still compared over the same window.
    """

    def __init__(
        self,
        settings: PrometheusSettings,
        *,
        at: Callable[[], datetime] | None = None,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        attempts: int = DEFAULT_ATTEMPTS,
    ) -> None:
        if max_concurrency < 1 or attempts < 1:
            raise ValueError("max_concurrency and attempts must be at least 1")
        self.settings = settings
        self.url = settings.url.rstrip("/")
        self.timeout = settings.timeout.total_seconds()
        self.attempts = attempts
        self._at = at
        self._closed = False
        self._semaphore = asyncio.Semaphore(max_concurrency)
        # A private pool: a hung Prometheus then cannot starve the loop's default executor,
        # which aiohttp uses for DNS; close() can also wait for exactly these threads.
        self._executor = ThreadPoolExecutor(
            max_workers=max_concurrency, thread_name_prefix="ptc-prometheus"
        )
        session = requests.Session()
        # No proxy/netrc lookups from the environment on every request (they cost more than the
        # query at scale); settings say exactly how to reach Prometheus.
        session.trust_env = False
        session.verify = settings.ca_file or True
        session.headers.update(settings.headers)
        if settings.bearer_token_file:
            # Applied after headers, so the token file wins over a static Authorization header.
            session.auth = _BearerTokenFile(settings.bearer_token_file)
        self._client = PrometheusConnect(url=self.url, session=session, retry=_NO_RETRY)
        # Re-mount after the client (which mounts its own adapter on the URL) so the pool is
        # as large as the concurrency and no adapter anywhere retries on its own.
        adapter = HTTPAdapter(max_retries=_NO_RETRY, pool_maxsize=max_concurrency)
        for prefix in ("http://", "https://", self.url):
            session.mount(prefix, adapter)
        self._session = session

    # -- the Provider protocol ------------------------------------------------------------

    async def measure(self, rollout: Rollout, analysis: Analysis) -> dict[str, Measurement]:
        """Canary (and, with ``compare``, stable) samples for every metric, in parallel."""
        deadline = time.monotonic() + self.timeout
        params = self._time_params()
        context = self.query_context(rollout, analysis.window)

        async def one(metric_index: int) -> Measurement:
            metric = analysis.metrics[metric_index]
            sides = [Side.CANARY] + ([Side.STABLE] if metric.compare is not None else [])
            samples = await asyncio.gather(
                *(
                    self._sample(context, metric, side, metric.sample_query, deadline, params)
                    for side in sides
                )
            )
            return Measurement(metric.name, samples[0], samples[1] if len(samples) > 1 else None)

        results = await asyncio.gather(*(one(i) for i in range(len(analysis.metrics))))
        return {m.metric: m for m in results}

    async def capacity(
        self, rollout: Rollout, gate: CapacityGate, window: timedelta
    ) -> tuple[Sample, Sample]:
        """Canary capacity (canary side) and Service demand (service side), in parallel."""
        deadline = time.monotonic() + self.timeout
        params = self._time_params()
        context = self.query_context(rollout, window)
        capacity, demand = await asyncio.gather(
            self._sample(context, gate.capacity, Side.CANARY, None, deadline, params),
            self._sample(context, gate.demand, Side.SERVICE, None, deadline, params),
        )
        return capacity, demand

    async def close(self) -> None:
        """Close the HTTP session; wait (at most one timeout) for running worker threads."""
        if self._closed:
            return
        self._closed = True
        await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)
        self._session.close()

    def query_context(self, rollout: Rollout, window: timedelta) -> QueryContext:
        """The templates' variables for one call (``ptc backtest`` binds other pods here)."""
        return QueryContext(rollout, window)

    # -- one query --------------------------------------------------------------------------

    async def query(self, promql: str) -> Sample:
        """Evaluate one instant query that yields one number (no request count)."""
        outcome = await self._query(promql, time.monotonic() + self.timeout, self._time_params())
        return Sample(outcome.value, error=outcome.error)

    def _time_params(self) -> dict[str, str]:
        if self._at is None:
            return {}
        return {"time": f"{self._at().timestamp():.3f}"}

    async def _sample(
        self,
        context: QueryContext,
        source: Source,
        side: Side,
        sample_query: str | None,
        deadline: float,
        params: dict[str, str],
    ) -> Sample:
        """One side of one source: its value and, where the source has one, its request count."""
        try:
            compiled: CompiledQuery = context.compile(source, side, sample_query)
        except ValueError as exc:  # TemplateError included; config validation should prevent it
            return Sample(None, error=f"cannot build the {side} query: {exc}")
        queries = [compiled.value] + ([compiled.sample] if compiled.sample else [])
        outcomes = await asyncio.gather(*(self._query(q, deadline, params) for q in queries))
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

    async def _query(self, promql: str, deadline: float, params: dict[str, str]) -> _Outcome:
        """Run one query with retries until `deadline`; the outcome, never an exception."""
        if self._closed:
            return _Outcome(None, f"provider is closed (query: {promql})")
        attempts = 0

        def stop(state: RetryCallState) -> bool:
            if state.attempt_number >= self.attempts:
                return True
            return time.monotonic() + state.upcoming_sleep + MIN_ATTEMPT_SECONDS >= deadline

        def note_retry(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome is not None else None
            log.info(
                "prometheus query retry",
                attempt=state.attempt_number,
                reason=str(exc),
                backoff_s=round(state.upcoming_sleep, 3),
                query=promql,
            )

        try:
            async for attempt in AsyncRetrying(
                stop=stop,
                # wait_exponential + wait_random rather than wait_exponential_jitter, whose
                # arguments changed between tenacity 8 and 9.
                wait=wait_exponential(multiplier=BACKOFF_INITIAL, max=BACKOFF_MAX)
                + wait_random(0, BACKOFF_JITTER),
                retry=retry_if_exception(_is_transient),
                before_sleep=note_retry,
                reraise=True,
            ):
                with attempt:
                    attempts += 1
                    result = await self._attempt(promql, deadline, params)
        except QueryFailed as exc:
            tried = f" after {attempts} attempts" if attempts > 1 else ""
            return _Outcome(None, f"{exc.reason}{tried} (query: {promql})")
        try:
            return _Outcome(single_value(result))
        except QueryFailed as exc:
            return _Outcome(None, f"{exc.reason} (query: {promql})")

    async def _attempt(self, promql: str, deadline: float, params: dict[str, str]) -> Any:
        """One HTTP request on the worker pool."""
        if deadline - time.monotonic() < MIN_ATTEMPT_SECONDS:
            raise QueryFailed(self._budget_spent(), transient=False)
        async with self._semaphore:
            loop = asyncio.get_running_loop()
            try:
                future = loop.run_in_executor(
                    self._executor, partial(self._blocking_query, promql, deadline, params)
                )
            except RuntimeError:  # close() shut the pool down while this query waited
                raise QueryFailed("provider is closed", transient=False) from None
            backstop = max(0.0, deadline - time.monotonic()) + BACKSTOP_GRACE
            try:
                return await asyncio.wait_for(future, backstop)
            except TimeoutError:
                raise QueryFailed(
                    f"no complete answer from {self.url} within {self.timeout:g}s (timeout)",
                    transient=False,
                ) from None

    def _budget_spent(self) -> str:
        return f"timeout: the {self.timeout:g}s budget was spent before the query could run"

    def _blocking_query(self, promql: str, deadline: float, params: dict[str, str]) -> Any:
        """In a worker thread: one request with the time left as its timeout."""
        remaining = deadline - time.monotonic()
        if remaining < MIN_ATTEMPT_SECONDS:  # waited in the pool's queue until too late
            raise QueryFailed(self._budget_spent(), transient=False)
        try:
            return self._client.custom_query(promql, params=dict(params), timeout=remaining)
        except PrometheusApiClientException as exc:
            raise _api_failure(exc) from exc
        except requests.exceptions.SSLError as exc:
            raise QueryFailed(f"TLS error talking to {self.url}: {exc}", transient=False) from exc
        except requests.exceptions.ConnectTimeout as exc:
            raise QueryFailed(
                f"timeout: could not connect to {self.url} within {remaining:.3g}s",
                transient=True,
            ) from exc
        except requests.exceptions.ReadTimeout as exc:
            raise QueryFailed(
                f"timeout: no answer from {self.url} within {remaining:.3g}s", transient=True
            ) from exc
        except requests.exceptions.ConnectionError as exc:
            raise QueryFailed(
                f"cannot connect to {self.url}: {_root_cause(exc)}", transient=True
            ) from exc
        except requests.exceptions.JSONDecodeError as exc:
            raise QueryFailed(f"invalid JSON from {self.url}: {exc}", transient=False) from exc
        except requests.exceptions.RequestException as exc:
            raise QueryFailed(f"request to {self.url} failed: {exc}", transient=False) from exc
        except (KeyError, TypeError, ValueError) as exc:
            # A 200 that is not a Prometheus API answer (e.g. a proxy's HTML page).
            raise QueryFailed(
                f"unexpected response from {self.url}: {exc!r}", transient=False
            ) from exc


__all__ = ["PrometheusProvider", "QueryFailed", "single_value"]
