"""The I/O half of `ptc report`: the state from the rollout's Service, series from Prometheus.

Prometheus is optional and best effort: a failed or empty range query becomes a note on the
report, never a failed report (a postmortem still wants the decisions when Prometheus is down
or has already dropped the data). Range queries go through the one Prometheus client
(`controller.shell.providers.promclient`: auth, TLS, retries); each has the Prometheus timeout from
the config, and at most a few run at once.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from controller.core.analysis.templates import QueryContext, matcher_text
from controller.core.config.model import Config, PrometheusSettings, Rollout, Side
from controller.core.state import STATE_ANNOTATION, RolloutState, StateError, decode_state
from controller.ops.report.errors import BadReportRequest, ReportError
from controller.ops.report.model import MetricSeries, Point, ReportSeries
from controller.ops.report.timeline import configured_metrics, time_span
from controller.shell import history
from controller.shell.command_annotation import RolloutNotFound, find_service
from controller.shell.kube import Kube, KubeError, NotFound
from controller.shell.providers.promclient import PrometheusClient, QueryFailed

log = structlog.get_logger("ptc.report")

WEIGHT_ACTUAL = "ptc_rollout_weight_actual_percent"
ANALYSIS_VALUE = "ptc_analysis_value"
RANGE_POINTS = 600  # samples per series: finer than the chart can show at 1600 px
MAX_CONCURRENT_QUERIES = 4


@dataclass(frozen=True)
class ReportRequest:
    """What `ptc report` was asked for (the config already loaded, if one was given)."""

    rollout: str
    namespace: str | None = None  # default: the rollout's in the config, else "default"
    kubeconfig: str | None = None
    config: Config | None = None
    prometheus_url: str | None = None  # overrides the config's prometheus.url
    use_prometheus: bool = True
    timeout: float = 30.0  # seconds for the Kubernetes part

    def spec(self) -> Rollout | None:
        """The rollout's config; BadReportRequest when the config has no such rollout."""
        if self.config is None:
            return None
        try:
            return self.config.rollout(self.rollout)
        except KeyError as exc:
            raise BadReportRequest(str(exc.args[0])) from None

    def prometheus(self) -> PrometheusSettings | None:
        """Where to ask for series, or None for a report from the records only."""
        if not self.use_prometheus:
            return None
        if self.config is not None:
            settings = self.config.prometheus
            if self.prometheus_url:
                settings = settings.model_copy(update={"url": self.prometheus_url})
            return settings
        return PrometheusSettings(url=self.prometheus_url) if self.prometheus_url else None


@dataclass(frozen=True)
class ReportData:
    """Everything fetched for one report."""

    state: RolloutState
    series: ReportSeries | None
    namespace: str
    service: str
    spec: Rollout | None


async def load_state(
    kube: Kube, namespace: str, rollout: str, service: str | None = None, timeout: float = 30.0
) -> tuple[RolloutState, str]:
    """The rollout's persisted state and its Service's name.

    With `service` (known from the config) that Service is read; otherwise the namespace's
    Services are listed and the one whose state names `rollout` is taken.
    """
    if service is not None:
        try:
            svc = await kube.get_service(namespace, service)
        except NotFound:
            raise BadReportRequest(
                f"Service {namespace}/{service} of rollout {rollout!r} not found: check the "
                "namespace (--namespace) and the kubeconfig's cluster"
            ) from None
    else:
        informer = kube.informer("services", namespace)
        await informer.start()
        await informer.wait_synced(timeout)
        try:
            svc = find_service(informer.items(), rollout)
        except RolloutNotFound as exc:
            raise BadReportRequest(f"{exc} in namespace {namespace!r}") from None
    raw = svc.annotations.get(STATE_ANNOTATION)
    if not raw:
        raise BadReportRequest(
            f"Service {namespace}/{svc.name} carries no {STATE_ANNOTATION}: rollout {rollout!r} "
            "has not started, so there is nothing to report"
        )
    try:
        state = decode_state(raw)
    except StateError as exc:
        raise ReportError(f"Service {namespace}/{svc.name}: {exc}") from None
    written_for = state.identity.rollout
    if written_for and written_for != rollout:
        raise BadReportRequest(
            f"Service {namespace}/{svc.name} carries the state of rollout {written_for!r}, "
            f"not {rollout!r}"
        )
    # The annotation keeps the last few decisions; the history ConfigMap has the rest.
    try:
        recorded = await history.read(kube, namespace, svc.name, state.revision)
    except (KubeError, StateError) as exc:
        log.warning("decision history unreadable; the report shows the state's", error=str(exc))
        recorded = ()
    return replace(state, history=history.merge(recorded, state.history)), svc.name


def _range_step(start: datetime, end: datetime) -> int:
    return max(1, math.ceil((end - start).total_seconds() / RANGE_POINTS))


def _points(values: list[Any], step: int) -> tuple[Point, ...]:
    """Prometheus ``[[ts, "v"], ...]`` as points; a gap longer than 2 steps breaks the line."""
    out: list[Point] = []
    last: float | None = None
    for ts, raw in values:
        t = float(ts)
        try:
            value = float(raw)
        except ValueError:
            continue
        if not math.isfinite(value):
            value = math.nan
        if last is not None and t - last > 2 * step:
            out.append(Point(datetime.fromtimestamp(last + step, UTC), math.nan))
        out.append(Point(datetime.fromtimestamp(t, UTC), value))
        last = t
    return tuple(out)


class _RangeQueries:
    """Range queries against one Prometheus over one period; failures are collected."""

    def __init__(self, client: PrometheusClient, start: datetime, end: datetime) -> None:
        self.client = client
        self.base = client.settings.url
        self.start, self.end = start, end
        self.step = _range_step(start, end)
        self.failures: dict[str, list[str]] = {}

    async def run(self, promql: str) -> list[tuple[Mapping[str, str], tuple[Point, ...]]]:
        """Every series the query returns over the period; [] (and a failure noted) on error."""
        try:
            result = await self.client.range(
                promql,
                self.start.timestamp(),
                self.end.timestamp(),
                self.step,
                self.client.deadline(),
            )
        except QueryFailed as exc:
            self.failures.setdefault(exc.reason, []).append(promql)
            return []
        if not isinstance(result, list):
            self.failures.setdefault("not a range result", []).append(promql)
            return []
        return [
            (item.get("metric", {}), _points(item.get("values", []), self.step))
            for item in result
            if isinstance(item, dict)
        ]

    async def one(self, promql: str) -> tuple[Point, ...]:
        """The query's series with the most samples (one is expected)."""
        found = await self.run(promql)
        return max((points for _, points in found), key=len, default=())

    def notes(self) -> list[str]:
        """The failures, one line per distinct reason."""
        return [
            f"Prometheus {self.base}: {len(queries)} range "
            f"quer{'y' if len(queries) == 1 else 'ies'} failed: {reason}"
            for reason, queries in self.failures.items()
        ]


async def fetch_series(
    settings: PrometheusSettings,
    state: RolloutState,
    *,
    namespace: str,
    rollout: str,
    spec: Rollout | None = None,
    now: datetime | None = None,
) -> ReportSeries:
    """Range series over the rollout's period: actual weight, and each metric per side.

    With the rollout's config each metric's own PromQL is compiled for canary and stable (at
    the rollout's analysis window); without it, the values ptc itself exported
    (``ptc_analysis_value``) are used, which exist only if Prometheus scrapes ptc.
    """
    start, end = time_span(state, now or datetime.now(UTC))
    margin = max((end - start) * 0.02, timedelta(seconds=30))
    start, end = start - margin, end + margin
    labels = matcher_text({"namespace": namespace, "rollout": rollout})
    client = PrometheusClient(settings, max_concurrency=MAX_CONCURRENT_QUERIES)
    try:
        q = _RangeQueries(client, start, end)
        weight_task = asyncio.ensure_future(q.one(f"{WEIGHT_ACTUAL}{{{labels}}}"))
        metrics: dict[str, MetricSeries] = {}
        if spec is not None:
            context = QueryContext(spec, spec.analysis.window)
            defined = configured_metrics(spec)
            compiled = [
                (
                    m.name,
                    context.compile(m, Side.CANARY, m.sample_query).value,
                    context.compile(m, Side.STABLE, m.sample_query).value,
                )
                for m in defined
            ]
            results = await asyncio.gather(
                *(q.one(query) for _, canary, stable in compiled for query in (canary, stable))
            )
            for i, (name, canary, stable) in enumerate(compiled):
                metrics[name] = MetricSeries(results[2 * i], results[2 * i + 1], canary, stable)
        else:
            exported = await q.run(f"{ANALYSIS_VALUE}{{{labels}}}")
            by_metric: dict[str, dict[str, tuple[Point, ...]]] = {}
            for series_labels, points in exported:
                name, side = series_labels.get("metric", ""), series_labels.get("side", "")
                if name and side in ("canary", "stable"):
                    by_metric.setdefault(name, {})[side] = points
            for name, sides in by_metric.items():
                metrics[name] = MetricSeries(sides.get("canary", ()), sides.get("stable", ()))
        weight = await weight_task
    finally:
        await client.close()
    notes = q.notes()
    if not q.failures:
        if not weight:
            notes.append(
                f"Prometheus has no {WEIGHT_ACTUAL} for {namespace}/{rollout} in this period "
                "(is ptc's /metrics scraped?): actual weight not shown"
            )
        empty = [n for n, s in metrics.items() if not s.canary and not s.stable]
        if empty:
            notes.append(f"Prometheus returned no samples for: {', '.join(empty)}")
    return ReportSeries(
        weight_actual=weight,
        metrics=metrics,
        source=f"Prometheus {settings.url}",
        notes=tuple(notes),
    )


async def fetch_report_data(request: ReportRequest, *, now: datetime | None = None) -> ReportData:
    """The state from the cluster and, when Prometheus is configured, its series."""
    spec = request.spec()
    namespace = request.namespace or (spec.namespace if spec is not None else "default")
    try:
        async with asyncio.timeout(request.timeout):
            kube = await Kube.connect(request.kubeconfig)
            try:
                state, service = await load_state(
                    kube,
                    namespace,
                    request.rollout,
                    spec.service if spec is not None else None,
                    request.timeout,
                )
            finally:
                await kube.close()
    except TimeoutError:
        raise ReportError(
            f"reading rollout {request.rollout!r} from the cluster took longer than "
            f"{request.timeout:g}s"
        ) from None
    except KubeError as exc:
        raise ReportError(f"Kubernetes API: {exc}") from None
    settings = request.prometheus()
    series = None
    if settings is not None:
        series = await fetch_series(
            settings, state, namespace=namespace, rollout=request.rollout, spec=spec, now=now
        )
    return ReportData(state, series, namespace, service, spec)
