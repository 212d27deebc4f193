"""Where `ptc status` reads from: the controller's HTTP API, or the cluster itself.

From the cluster, the decisions are the history ConfigMap's (every record, with its metric
readings; see `controller.shell.history`) merged with the state annotation's last few, each record
once. When the ConfigMap cannot help (missing, forbidden, unreadable, another rollout's, written
by a newer ptc, or not answering within `HISTORY_TIMEOUT`) the annotation's records are shown
alone and the document's ``history.problem`` says why.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import aiohttp

from controller.core.state import DecisionRecord, Phase, RolloutState, StateError, read_state
from controller.core.status import status_document
from controller.shell import history
from controller.shell.kube import DeploymentInfo, Informer, Kube, KubeError, ServiceInfo

HISTORY_TIMEOUT = 5.0  # seconds for one history ConfigMap read; past it, the annotation's
HISTORY_READS = 8  # history ConfigMaps read at once
HISTORY_LAG_RETRY = 2.0  # seconds before re-reading a ConfigMap that lacked the newest decision


class StatusError(Exception):
    """The status could not be read."""


async def from_controller(url: str, timeout: float = 10.0) -> list[dict[str, Any]]:
    """GET {url}/api/v1/rollouts: the rollouts."""
    body = await controller_document(url, timeout)
    rollouts: list[dict[str, Any]] = body.get("rollouts", [])
    return rollouts


async def controller_document(url: str, timeout: float = 10.0) -> dict[str, Any]:
    """GET {url}/api/v1/rollouts: the rollouts, and the controller's own view (shards)."""
    endpoint = url.rstrip("/") + "/api/v1/rollouts"
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as http,
            http.get(endpoint) as response,
        ):
            if response.status != 200:
                raise StatusError(f"{endpoint} answered {response.status}")
            body = await response.json()
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise StatusError(f"cannot reach the controller at {endpoint}: {exc}") from exc
    if not isinstance(body, dict):
        raise StatusError(f"{endpoint} answered something that is not a JSON object")
    return body


@dataclass(frozen=True)
class _Recorded:
    """One history ConfigMap read: for which Service version, its records, or why none."""

    service_version: str
    records: tuple[DecisionRecord, ...]
    problem: str | None
    read_at: float  # the event loop's clock

    def lacks(self, record: DecisionRecord) -> bool:
        """Whether this read is older than `record` (the ConfigMap is written after the state)."""
        key = history.record_key(record)
        return self.problem is None and all(history.record_key(r) != key for r in self.records)


class ClusterStatus:
    """Status from the Services' state annotations, the history ConfigMaps and the Deployments.

    Services and Deployments are watched, not polled. A history ConfigMap is read again only
    when its Service changed since the last read, or when the read lacked the annotation's
    newest decision (the ConfigMap is written after the state, so it may lag it briefly).
    """

    def __init__(self, kube: Kube, namespace: str) -> None:
        self.namespace = namespace
        self.kube = kube
        self.services: Informer[ServiceInfo] = kube.informer("services", namespace)
        self.deployments: Informer[DeploymentInfo] = kube.informer("deployments", namespace)
        self.changed = asyncio.Event()
        self._recorded: dict[str, _Recorded] = {}
        self.history_reads = 0  # ConfigMap reads made (for tests)
        self.lag_retry = HISTORY_LAG_RETRY

    async def start(self, timeout: float = 30.0) -> None:
        """Start watching and wait for the first lists."""
        for informer in (self.services, self.deployments):
            informer.subscribe(lambda _type, _obj: self.changed.set())
            await informer.start()
        for informer in (self.services, self.deployments):
            await informer.wait_synced(timeout)

    async def documents(self, now: datetime | None = None) -> list[dict[str, Any]]:
        """A status document per Service that carries a rollout state."""
        now = now or datetime.now(UTC)
        states: list[tuple[ServiceInfo, RolloutState | str]] = []
        for svc in self.services.items():
            try:
                state = read_state(svc.annotations)
            except StateError as exc:
                states.append((svc, str(exc)))
                continue
            if state is not None:
                states.append((svc, state))
        slots = asyncio.Semaphore(HISTORY_READS)

        async def recorded(svc: ServiceInfo, state: RolloutState) -> _Recorded:
            async with slots:
                return await self._history(svc, state)

        async with asyncio.TaskGroup() as group:
            reads = {
                svc.name: group.create_task(recorded(svc, found))
                for svc, found in states
                if isinstance(found, RolloutState)
            }
        docs = []
        for svc, found in states:
            if isinstance(found, str):
                docs.append(_broken(svc, found, now))
                continue
            read = reads[svc.name].result()
            full = replace(found, history=history.merge(read.records, found.history))
            docs.append(self._document(svc, full, now, read))
        self._recorded = {name: task.result() for name, task in reads.items()}
        return docs

    async def _history(self, svc: ServiceInfo, state: RolloutState) -> _Recorded:
        """The ConfigMap's records for `state`, re-read only when they may have changed."""
        last = self._recorded.get(svc.name)
        now = asyncio.get_running_loop().time()
        if (
            last is not None
            and last.service_version == svc.resource_version
            and not (
                state.history
                and last.lacks(state.history[-1])
                and now - last.read_at >= self.lag_retry
            )
        ):
            return last
        self.history_reads += 1
        try:
            async with asyncio.timeout(HISTORY_TIMEOUT):
                records = await history.read(self.kube, svc.namespace, svc.name, state.revision)
        except (KubeError, StateError) as exc:
            return _Recorded(svc.resource_version, (), _history_problem(svc, str(exc)), now)
        except TimeoutError:
            problem = _history_problem(svc, f"no answer within {HISTORY_TIMEOUT:g}s")
            return _Recorded(svc.resource_version, (), problem, now)
        return _Recorded(svc.resource_version, records, None, now)

    def _document(
        self, svc: ServiceInfo, state: RolloutState, now: datetime, recorded: _Recorded
    ) -> dict[str, Any]:
        who = state.identity
        stable = self.deployments.get(who.stable) if who.stable else None
        canary = self.deployments.get(who.canary) if who.canary else None
        replicas = {
            role: {"spec": dep.spec_replicas, "ready": dep.ready_replicas}
            for role, dep in (("stable", stable), ("canary", canary))
            if dep is not None
        }
        pinned = dict(svc.selector) != dict(state.progress.shared_selector)
        ready_canary = canary.ready_replicas if canary else 0
        ready_stable = stable.ready_replicas if stable else 0
        after_flip = state.phase in (Phase.BAKING, Phase.SCALING_DOWN, Phase.COMPLETED)
        if pinned:
            # One version behind the Service: after the flip canary, after a rollback stable.
            endpoints = {"canary": 1 if after_flip else 0, "stable": 0 if after_flip else 1}
        else:
            endpoints = {"canary": ready_canary, "stable": ready_stable}
        return status_document(
            name=who.rollout or svc.name,
            namespace=svc.namespace,
            service=svc.name,
            stable=who.stable or "?",
            canary=who.canary or "?",
            steps=who.steps,
            state=state,
            replicas=replicas or None,
            endpoints=endpoints,
            selector=svc.selector,
            analysis=None,
            waiting=None,
            problem=None,
            now=now,
            decisions=None,
            history_source={
                "source": "configmap" if recorded.records else "annotation",
                "problem": recorded.problem,
            },
        )


def _history_problem(svc: ServiceInfo, error: str) -> str:
    name = history.configmap_name(svc.name)
    return f"history ConfigMap {svc.namespace}/{name} not used ({error}); showing the annotation's"


def _broken(svc: ServiceInfo, error: str, now: datetime) -> dict[str, Any]:
    return status_document(
        name=svc.name,
        namespace=svc.namespace,
        service=svc.name,
        stable="?",
        canary="?",
        steps=0,
        state=None,
        replicas=None,
        endpoints=None,
        selector=svc.selector,
        analysis=None,
        waiting=None,
        problem=error,
        now=now,
    )


def select(docs: list[dict[str, Any]], rollout: str | None) -> list[dict[str, Any]]:
    """Only `rollout` (all when None); StatusError naming the ones there are."""
    if rollout is None:
        return docs
    chosen = [d for d in docs if d["name"] == rollout]
    if not chosen:
        names = ", ".join(sorted(d["name"] for d in docs)) or "none"
        raise StatusError(f"no rollout named {rollout!r} (rollouts: {names})")
    return chosen
