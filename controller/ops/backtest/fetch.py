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
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from controller.core.config.model import PrometheusSettings
from controller.shell.providers.promclient import PrometheusClient, QueryFailed

MAX_CONCURRENT_QUERIES = 4


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


def _about_the_request(error: str) -> bool:
    """Whether Prometheus refused the range itself (start, end, step, timeout), not the query."""
    parameter = re.search(r'invalid parameter "(\w+)"', error)
    return (parameter is not None and parameter.group(1) != "query") or (
        "exceeded maximum resolution" in error
    )


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
    the server stops evaluating too (`PrometheusClient.range`).
    """
    base = settings.url.rstrip("/")
    table = RangeTable()
    done = 0
    client = PrometheusClient(settings, max_concurrency=MAX_CONCURRENT_QUERIES)

    async def one(promql: str) -> None:
        nonlocal done
        try:
            result = await client.range(
                promql,
                to_ms(start) / 1000,
                to_ms(end) / 1000,
                step.total_seconds(),
                deadline,
            )
        except QueryFailed as exc:
            if exc.reason.startswith("timeout"):
                raise FetchError(
                    f"Prometheus {base} did not answer within the time left of --timeout "
                    f"(query: {promql})"
                ) from None
            if exc.rejected and not exc.transient:
                if _about_the_request(exc.reason):
                    raise FetchError(
                        f"Prometheus {base} refused the range query: {exc.reason}"
                    ) from None
                table.errors[promql] = exc.reason  # what the controller would have met
            elif not exc.transient and (
                exc.status is not None or exc.reason.startswith(("invalid JSON", "unexpected"))
            ):
                raise FetchError(
                    f"{base} did not answer as Prometheus does (HTTP {exc.status or 200}): "
                    "check prometheus.url / --prometheus-url"
                ) from None
            else:
                raise FetchError(f"Prometheus {base}: {exc.reason} (query: {promql})") from None
        else:
            table.series[promql] = _series({"result": result})
        done += 1
        if progress is not None:
            progress(done, total)

    unique = list(dict.fromkeys(queries))
    total = len(unique)
    try:
        # A TaskGroup cancels the other queries as soon as one fails for good.
        async with asyncio.TaskGroup() as group:
            for promql in unique:
                group.create_task(one(promql))
    except BaseExceptionGroup as failed:
        raise _first(failed) from None
    finally:
        await client.close()
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
