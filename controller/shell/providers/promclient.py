"""The one Prometheus HTTP client: instant and range queries over aiohttp, with one setup.

Used by the analysis provider (instant queries), ``ptc report`` and ``ptc backtest`` (range
queries). Everything about reaching Prometheus lives here, once:

* **Auth and TLS.** ``headers`` on every request; ``bearerTokenFile`` read at every request
  (Kubernetes rotates projected service-account tokens in place) and applied after the headers,
  so it wins over a static ``Authorization``; ``caFile`` as the TLS trust root. No proxy or netrc
  lookups from the environment: the settings say exactly how to reach Prometheus.
* **One deadline per call.** The caller passes a monotonic deadline; every attempt is sent with
  the time left as its total timeout, and no attempt starts with less than
  ``MIN_ATTEMPT_SECONDS`` left.
* **One retry layer.** tenacity retries transient failures only - connection errors,
  timeouts, HTTP 5xx, 408 and 429 - at most ``attempts`` times with exponential backoff
  (0.2 s, 0.4 s, ... capped at 1 s, plus up to 0.1 s jitter), never past the deadline. HTTP 4xx
  (``bad_data``, ``execution``) is final at once.
* **Bounded concurrency.** At most ``max_concurrency`` requests are in flight; the rest wait,
  and their wait counts against their deadline.

A failure is a `QueryFailed` whose ``reason`` says what failed (HTTP status and Prometheus'
``errorType``, timeout, connection refused, TLS, ...) and how many attempts were made; the
caller adds the query.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import time
from pathlib import Path
from typing import Any

import aiohttp
import structlog
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    wait_exponential,
    wait_random,
)

from controller.core.config.model import PrometheusSettings

log = structlog.get_logger(__name__)

DEFAULT_ATTEMPTS = 3
DEFAULT_MAX_CONCURRENCY = 8
BACKOFF_INITIAL = 0.2  # seconds before the first retry; doubles per retry
BACKOFF_MAX = 1.0  # a retry never waits longer than this
BACKOFF_JITTER = 0.1
# Don't start an attempt with less time than this left: it could only time out.
MIN_ATTEMPT_SECONDS = 0.05

_TRANSIENT_STATUS = frozenset({408, 429})


class QueryFailed(Exception):
    """A query failed; `transient` failures are worth another attempt.

    `status` is the HTTP status of an error answer (None when there was none); `rejected` says
    it was Prometheus' own API error (a body with ``errorType``), not some other server's page.
    """

    def __init__(
        self, reason: str, *, transient: bool, status: int | None = None, rejected: bool = False
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.transient = transient
        self.status = status
        self.rejected = rejected


def _is_transient(exc: BaseException) -> bool:
    return isinstance(exc, QueryFailed) and exc.transient


def _os_reason(error: OSError) -> str:
    # asyncio's "Connect call failed (...)" hides the reason its errno names.
    errno = error.errno or 0  # gaierror's are negative: its strerror says it
    reason = os.strerror(errno) if errno > 0 else error.strerror or str(error)
    return reason[:1].lower() + reason[1:]


def _http_failure(status: int, body: bytes) -> QueryFailed:
    text = body.decode("utf-8", "replace")
    rejected = False
    try:
        payload = json.loads(text)
        detail = f"{payload['errorType']}: {payload['error']}"
        rejected = True
    except (ValueError, KeyError, TypeError):
        detail = text.strip()[:300] or "(empty body)"
    transient = status >= 500 or status in _TRANSIENT_STATUS
    return QueryFailed(
        f"HTTP {status} {detail}", transient=transient, status=status, rejected=rejected
    )


class PrometheusClient:
    """Instant and range queries against one Prometheus (module doc: the rules)."""

    def __init__(
        self,
        settings: PrometheusSettings,
        *,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        attempts: int = DEFAULT_ATTEMPTS,
    ) -> None:
        if max_concurrency < 1 or attempts < 1:
            raise ValueError("max_concurrency and attempts must be at least 1")
        self.settings = settings
        self.url = settings.url.rstrip("/")
        self.timeout = settings.timeout.total_seconds()
        self.attempts = attempts
        self.max_concurrency = max_concurrency
        self.requests_sent = 0  # HTTP requests, retries included (benchmarks and tests read it)
        self._closed = False
        self._semaphore = asyncio.Semaphore(max_concurrency)
        self._session: aiohttp.ClientSession | None = None

    @property
    def closed(self) -> bool:
        """Whether close() was called; every later query fails with 'provider is closed'."""
        return self._closed

    def deadline(self) -> float:
        """A monotonic deadline one configured timeout from now."""
        return time.monotonic() + self.timeout

    async def instant(self, promql: str, deadline: float, at: float | None = None) -> Any:
        """``data.result`` of an instant query (at `at`, Unix seconds; default: Prometheus' now)."""
        params = {"query": promql}
        if at is not None:
            params["time"] = f"{at:.3f}"
        return await self._retrying("/api/v1/query", params, deadline, promql)

    async def range(
        self, promql: str, start: float, end: float, step: float, deadline: float
    ) -> Any:
        """``data.result`` of a range query from `start` to `end` (Unix seconds) every `step` s.

        Prometheus is also sent the time left as its own ``timeout``, so a heavy range stops
        being evaluated when nobody waits for it any more.
        """
        params = {
            "query": promql,
            "start": f"{start:.3f}",
            "end": f"{end:.3f}",
            "step": f"{step:g}",  # float seconds: Prometheus' durations take no "1.5s"
        }
        return await self._retrying("/api/v1/query_range", params, deadline, promql)

    async def close(self) -> None:
        """Close the connections; running requests end at once, later ones fail."""
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    # -- one call, with retries ---------------------------------------------------------------

    async def _retrying(
        self, path: str, params: dict[str, str], deadline: float, promql: str
    ) -> Any:
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
                    return await self._attempt(path, params, deadline)
        except QueryFailed as exc:
            if attempts > 1:
                raise QueryFailed(
                    f"{exc.reason} after {attempts} attempts",
                    transient=exc.transient,
                    status=exc.status,
                    rejected=exc.rejected,
                ) from exc
            raise
        raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover

    def _budget_spent(self) -> str:
        return f"timeout: the {self.timeout:g}s budget was spent before the query could run"

    async def _attempt(self, path: str, params: dict[str, str], deadline: float) -> Any:
        if self._closed:
            raise QueryFailed("provider is closed", transient=False)
        if deadline - time.monotonic() < MIN_ATTEMPT_SECONDS:
            raise QueryFailed(self._budget_spent(), transient=False)
        async with self._semaphore:
            if self._closed:  # close() ran while this request waited for a slot
                raise QueryFailed("provider is closed", transient=False)
            remaining = deadline - time.monotonic()
            if remaining < MIN_ATTEMPT_SECONDS:  # waited for a slot until too late
                raise QueryFailed(self._budget_spent(), transient=False)
            headers = self._auth_headers()
            session = self._session_now()
            if path.endswith("query_range"):
                params = params | {"timeout": f"{max(int(remaining * 1000), 1)}ms"}
            self.requests_sent += 1
            try:
                async with session.get(
                    self.url + path,
                    params=params,
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(total=remaining),
                ) as response:
                    body = await response.read()
                    status = response.status
            except (aiohttp.ClientSSLError, ssl.SSLError) as exc:
                raise QueryFailed(
                    f"TLS error talking to {self.url}: {exc}", transient=False
                ) from exc
            except TimeoutError as exc:  # aiohttp's connect and read timeouts included
                raise QueryFailed(
                    f"timeout: no answer from {self.url} within {remaining:.3g}s", transient=True
                ) from exc
            except aiohttp.ClientConnectorError as exc:
                raise QueryFailed(
                    f"cannot connect to {self.url}: {_os_reason(exc.os_error)}", transient=True
                ) from exc
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
                if self._closed:
                    raise QueryFailed("provider is closed", transient=False) from exc
                raise QueryFailed(
                    f"connection to {self.url} failed: {exc or type(exc).__name__}",
                    transient=True,
                ) from exc
            except aiohttp.ClientError as exc:
                raise QueryFailed(
                    f"request to {self.url} failed: {exc or type(exc).__name__}", transient=False
                ) from exc
        return self._result(status, body)

    def _result(self, status: int, body: bytes) -> Any:
        if status != 200:
            raise _http_failure(status, body)
        try:
            payload = json.loads(body)
        except ValueError as exc:
            raise QueryFailed(f"invalid JSON from {self.url}: {exc}", transient=False) from exc
        try:
            if payload["status"] != "success":
                raise KeyError("status")
            return payload["data"]["result"]
        except (KeyError, TypeError) as exc:
            # A 200 that is not a Prometheus API answer (e.g. a proxy's page in JSON).
            raise QueryFailed(
                f"unexpected response from {self.url}: {str(payload)[:200]}", transient=False
            ) from exc

    def _auth_headers(self) -> dict[str, str]:
        headers = dict(self.settings.headers)
        path = self.settings.bearer_token_file
        if path:
            try:
                token = Path(path).read_text(encoding="utf-8").strip()
            except OSError as exc:
                reason = exc.strerror or str(exc)
                raise QueryFailed(
                    f"cannot read bearer token file {path}: {reason}", transient=False
                ) from exc
            if not token:
                raise QueryFailed(f"bearer token file {path} is empty", transient=False)
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def _session_now(self) -> aiohttp.ClientSession:
        if self._session is None:
            tls: ssl.SSLContext | bool = True
            if self.settings.ca_file:
                try:
                    tls = ssl.create_default_context(cafile=self.settings.ca_file)
                except (OSError, ssl.SSLError) as exc:
                    raise QueryFailed(
                        f"cannot use prometheus.caFile {self.settings.ca_file}: {exc}",
                        transient=False,
                    ) from exc
            connector = aiohttp.TCPConnector(limit=self.max_concurrency, ssl=tls)
            self._session = aiohttp.ClientSession(connector=connector, trust_env=False)
        return self._session


__all__ = ["PrometheusClient", "QueryFailed"]
