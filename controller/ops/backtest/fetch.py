"""Range data for a backtest: one ``query_range`` per compiled query over the whole period.

A range query evaluates its expression at ``start, start + step, ... <= end`` exactly as an
instant query at each of those times would (same lookback, same ``rate()`` windows), so with
the backtest's ticks as the steps the answers are the instant answers the controller would
have had - for a few queries instead of a few per tick (README, "ptc backtest": measured).

Failures split in two. Prometheus unreachable, slow or failing (connection errors, timeouts,
HTTP 5xx after retries, answers that are not Prometheus') abort the backtest: `FetchError`,
one line. A query Prometheus rejects (HTTP 4xx: ``bad_data``, ``execution``) is what the
controller would have met at every tick: it becomes that query's error, and every tick judges
it as the runner would (an error verdict), so the output shows it.
"""

from __future__ import annotations

import asyncio
import os
import re
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from controller.core.config.model import PrometheusSettings

MAX_CONCURRENT_QUERIES = 4
ATTEMPTS = 3  # per query, for transient failures only (connection, 5xx, 429)
BACKOFF = (0.5, 1.0)  # seconds before the 2nd and 3rd attempt
_TRANSIENT_STATUS = frozenset({408, 429, 502, 503, 504})


class FetchError(Exception):
    """Prometheus could not answer the backtest's queries (exit 1)."""


@dataclass(frozen=True)
class Series:
    """One series of a range result: its labels and ``{timestamp in ms: value text}``."""

    labels: Mapping[str, str]
    values: Mapping[int, str]


@dataclass
class RangeTable:
    """Range results by query; `errors` holds the queries Prometheus rejected."""

    series: dict[str, list[Series]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def at(self, promql: str, at_ms: int) -> list[dict[str, Any]]:
        """The query's result at one tick, shaped like an instant query's ``data.result``."""
        return [
            {"metric": dict(s.labels), "value": [at_ms / 1000, s.values[at_ms]]}
            for s in self.series.get(promql, ())
            if at_ms in s.values
        ]


def to_ms(at: datetime) -> int:
    """A tick's time as Prometheus' millisecond timestamps."""
    return round(at.timestamp() * 1000)


def _session_options(settings: PrometheusSettings) -> dict[str, Any]:
    headers = dict(settings.headers)
    if settings.bearer_token_file:
        try:
            token = Path(settings.bearer_token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise FetchError(
                f"prometheus.bearerTokenFile {settings.bearer_token_file}: {exc.strerror or exc}"
            ) from None
        headers["Authorization"] = f"Bearer {token}"
    options: dict[str, Any] = {"headers": headers}
    if settings.ca_file:
        try:
            context = ssl.create_default_context(cafile=settings.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise FetchError(f"prometheus.caFile {settings.ca_file}: {exc}") from None
        options["connector"] = aiohttp.TCPConnector(ssl=context)
    return options


class _Transient(Exception):
    pass


def _about_the_request(error: str) -> bool:
    """Whether Prometheus refused the range itself (start, end, step, timeout), not the query."""
    parameter = re.match(r'invalid parameter "(\w+)"', error)
    return (parameter is not None and parameter.group(1) != "query") or (
        "exceeded maximum resolution" in error
    )


def _describe(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientConnectorError):
        error = exc.os_error
        # asyncio's "Connect call failed (...)" hides the reason its errno names.
        errno = error.errno or 0  # gaierror's are negative: its strerror says it
        reason = os.strerror(errno) if errno > 0 else error.strerror or str(error)
        return f"cannot connect: {reason[:1].lower()}{reason[1:]}"
    if isinstance(exc, aiohttp.InvalidURL):
        return "not a valid URL"
    return str(exc) or type(exc).__name__


def url_problem(url: str) -> str | None:
    """What is wrong with a Prometheus base URL (None when it is usable)."""
    try:
        parsed = urlsplit(url)
        port = parsed.port
    except ValueError as exc:
        return f"not a valid URL: {exc}"
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        return "expected http(s)://HOST[:PORT][/PATH]"
    if port == 0:
        return "port 0 is not a port"
    return None


async def fetch_ranges(
    settings: PrometheusSettings,
    queries: Sequence[str],
    start: datetime,
    end: datetime,
    step: timedelta,
    *,
    deadline: float,
    progress: Callable[[int, int], None] | None = None,
) -> RangeTable:
    """Every query over [start, end] at `step`; FetchError when Prometheus cannot answer.

    `deadline` (``time.monotonic()``) bounds everything, retries included: each request is
    sent with the time left as its timeout, and as Prometheus' own ``timeout`` parameter so
    the server stops evaluating too.
    """
    base = settings.url.rstrip("/")
    url = base + "/api/v1/query_range"
    table = RangeTable()
    done = 0
    limit = asyncio.Semaphore(MAX_CONCURRENT_QUERIES)
    common = {
        "start": f"{to_ms(start) / 1000:.3f}",
        "end": f"{to_ms(end) / 1000:.3f}",
        "step": f"{step.total_seconds():g}",  # float seconds: Prometheus' durations take no "1.5s"
    }

    async def attempt(session: aiohttp.ClientSession, promql: str) -> Any:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        params = {**common, "query": promql, "timeout": f"{max(int(left * 1000), 1)}ms"}
        async with session.get(
            url, params=params, timeout=aiohttp.ClientTimeout(total=left)
        ) as resp:
            try:
                body = await resp.json(content_type=None)
            except ValueError:
                body = None
            if not isinstance(body, dict) or "status" not in body:
                if resp.status >= 500 or resp.status in _TRANSIENT_STATUS:
                    raise _Transient(f"HTTP {resp.status}")
                raise FetchError(
                    f"{base} did not answer as Prometheus does (HTTP {resp.status}): "
                    "check prometheus.url / --prometheus-url"
                )
            if body["status"] == "success":
                return body.get("data", {})
            detail = f"HTTP {resp.status} {body.get('errorType', '')}: {body.get('error', '')}"
            if resp.status >= 500 or resp.status in _TRANSIENT_STATUS:
                # 503/504 and errorType "timeout" included: the server is struggling.
                raise _Transient(detail)
            if _about_the_request(str(body.get("error", ""))):
                raise FetchError(f"Prometheus {base} refused the range query: {detail}")
            table.errors[promql] = detail
            return None

    async def one(session: aiohttp.ClientSession, promql: str) -> None:
        nonlocal done
        async with limit:
            for n in range(ATTEMPTS):
                try:
                    data = await attempt(session, promql)
                    break
                except TimeoutError:
                    raise FetchError(
                        f"Prometheus {base} did not answer within the time left of --timeout "
                        f"(query: {promql})"
                    ) from None
                except (_Transient, aiohttp.ClientError) as exc:
                    last = _describe(exc)
                    if n + 1 == ATTEMPTS or time.monotonic() + BACKOFF[n] >= deadline:
                        raise FetchError(f"Prometheus {base}: {last} (query: {promql})") from None
                    await asyncio.sleep(BACKOFF[n])
        if data is not None:
            table.series[promql] = _series(data)
        done += 1
        if progress is not None:
            progress(done, total)

    unique = list(dict.fromkeys(queries))
    total = len(unique)
    async with aiohttp.ClientSession(**_session_options(settings)) as session:
        try:
            # A TaskGroup cancels the other queries as soon as one fails for good.
            async with asyncio.TaskGroup() as group:
                for promql in unique:
                    group.create_task(one(session, promql))
        except BaseExceptionGroup as failed:
            raise _first(failed) from None
    return table


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The FetchError in a TaskGroup's failure (or its first exception when there is none)."""
    leaves: list[BaseException] = []
    stack: list[BaseException] = [group]
    while stack:
        exc = stack.pop(0)
        if isinstance(exc, BaseExceptionGroup):
            stack[:0] = list(exc.exceptions)
        else:
            leaves.append(exc)
    return next((e for e in leaves if isinstance(e, FetchError)), leaves[0])


def _series(data: Any) -> list[Series]:
    result = data.get("result", []) if isinstance(data, dict) else []
    if not isinstance(result, list):
        return []
    out = []
    for item in result:
        if not isinstance(item, dict):
            continue
        values: dict[int, str] = {}
        for pair in item.get("values", []):
            try:
                ts, raw = pair
                values[round(float(ts) * 1000)] = str(raw)
            except (TypeError, ValueError):
                continue
        labels = item.get("metric", {})
        out.append(Series(labels if isinstance(labels, dict) else {}, values))
    return out


__all__ = ["FetchError", "RangeTable", "Series", "fetch_ranges", "to_ms"]
