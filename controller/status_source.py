"""Where `ptc status` reads from: the controller's HTTP API, or the cluster itself."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import aiohttp

from controller.kube import DeploymentInfo, Informer, Kube, ServiceInfo
from controller.state import Phase, RolloutState, StateError, read_state
from controller.status import status_document


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


class ClusterStatus:
    """Status from the Services' state annotations and the Deployments (watched, not polled)."""

    def __init__(self, kube: Kube, namespace: str) -> None:
        self.namespace = namespace
        self.services: Informer[ServiceInfo] = kube.informer("services", namespace)
        self.deployments: Informer[DeploymentInfo] = kube.informer("deployments", namespace)
        self.changed = asyncio.Event()

    async def start(self, timeout: float = 30.0) -> None:
        """Start watching and wait for the first lists."""
        for informer in (self.services, self.deployments):
            informer.subscribe(lambda _type, _obj: self.changed.set())
            await informer.start()
        for informer in (self.services, self.deployments):
            await informer.wait_synced(timeout)

    def documents(self, now: datetime | None = None) -> list[dict[str, Any]]:
        """A status document per Service that carries a rollout state."""
        now = now or datetime.now(UTC)
        docs = []
        for svc in self.services.items():
            try:
                state = read_state(svc.annotations)
            except StateError as exc:
                docs.append(_broken(svc, str(exc), now))
                continue
            if state is not None:
                docs.append(self._document(svc, state, now))
        return docs

    def _document(self, svc: ServiceInfo, state: RolloutState, now: datetime) -> dict[str, Any]:
        stable = self.deployments.get(state.stable) if state.stable else None
        canary = self.deployments.get(state.canary) if state.canary else None
        replicas = {
            role: {"spec": dep.spec_replicas, "ready": dep.ready_replicas}
            for role, dep in (("stable", stable), ("canary", canary))
            if dep is not None
        }
        pinned = dict(svc.selector) != dict(state.shared_selector)
        ready_canary = canary.ready_replicas if canary else 0
        ready_stable = stable.ready_replicas if stable else 0
        after_flip = state.phase in (Phase.BAKING, Phase.SCALING_DOWN, Phase.COMPLETED)
        if pinned:
            # One version behind the Service: after the flip canary, after a rollback stable.
            endpoints = {"canary": 1 if after_flip else 0, "stable": 0 if after_flip else 1}
        else:
            endpoints = {"canary": ready_canary, "stable": ready_stable}
        return status_document(
            name=state.rollout or svc.name,
            namespace=svc.namespace,
            service=svc.name,
            stable=state.stable or "?",
            canary=state.canary or "?",
            steps=state.steps,
            state=state,
            replicas=replicas or None,
            endpoints=endpoints,
            selector=svc.selector,
            analysis=None,
            waiting=None,
            problem=None,
            now=now,
        )


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
