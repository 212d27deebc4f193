"""The Kubernetes API adapter: every read and write the controller makes goes through :class:`Kube`.

Each call has a timeout; a request that fails with Unavailable (5xx, 429, connection errors,
timeouts) is retried here, with tenacity exponential backoff, jitter, a cap and a maximum number
of attempts (:class:`~controller.shell.kube.policy.KubePolicy`), and no caller re-sends it: once the
attempts are spent, the reconciler requeues and decides afresh from its caches
(:mod:`controller.shell.kube.retrying`) and the leader elector tries again at its next renewal.
Watches and their lists are the informers' (:mod:`controller.shell.kube.informer`), which reconnect
with their own backoff. NotFound, Conflict, Forbidden and Invalid are raised at once. Only the
permissions in :data:`~controller.shell.kube.permissions.PERMISSIONS` are used.

Writes are fenced to leadership: with a ``fence`` (the leader elector's time left), every write
attempt — the first and each retry — is sent only while leadership lasts and is bounded by the
time left, else :class:`~controller.shell.kube.errors.NotLeader`. The Lease writes of the election
itself are not fenced, nor are Events (they record, they do not act).

The calls live by kind, each in its own module, all sending through
:meth:`~controller.shell.kube.base.KubeBase._call`: :mod:`~controller.shell.kube.services`,
:mod:`~controller.shell.kube.workloads` (Deployments, Pods, HPAs),
:mod:`~controller.shell.kube.records` (Events, ConfigMaps), :mod:`~controller.shell.kube.leases`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any, Literal, overload

from controller.core.objects import (
    DeploymentInfo,
    EndpointSliceInfo,
    PodInfo,
    ServiceInfo,
    deployment_info,
    endpoint_slice_info,
    pod_info,
    service_info,
)
from controller.shell.kube.base import WRITES, Fence
from controller.shell.kube.informer import Informer
from controller.shell.kube.leases import LeaseCalls
from controller.shell.kube.policy import KubePolicy, call_with_retries
from controller.shell.kube.records import RecordCalls
from controller.shell.kube.resources import BY_KIND, Kind
from controller.shell.kube.services import ServiceCalls
from controller.shell.kube.transport import Obj, Transport
from controller.shell.kube.workloads import WorkloadCalls, selector_string

_PARSERS: dict[str, Callable[[Obj], Any]] = {
    "pods": pod_info,
    "deployments": deployment_info,
    "services": service_info,
    "endpointslices": endpoint_slice_info,
}


class Kube(ServiceCalls, WorkloadCalls, RecordCalls, LeaseCalls):
    """Kubernetes API adapter (kr8s async underneath); create with :meth:`connect`."""

    @classmethod
    async def connect(
        cls,
        kubeconfig: str | None = None,
        *,
        timeout: float | None = None,
        policy: KubePolicy | None = None,
        clock: Callable[[], datetime] | None = None,
        instance: str | None = None,
    ) -> Kube:
        """Connect with a kubeconfig file, or in-cluster (service account) when None.

        ``timeout`` (seconds per request attempt) overrides ``policy.timeout``. ``clock`` gives
        Event timestamps; ``instance`` is the Events' reportingInstance (default: host name).
        """
        policy = policy or KubePolicy()
        if timeout is not None:
            policy = replace(policy, timeout=timeout)
        transport = await call_with_retries(
            policy, lambda: Transport.open(kubeconfig, policy.timeout), "connect"
        )
        return cls(transport, policy, clock=clock, instance=instance)

    def fenced_by(self, fence: Fence) -> Kube:
        """This adapter (same connection, informers, Event tracker) with writes under ``fence``.

        Sharding fences each rollout's writes by its own shard's Lease; the view is not closed
        on its own (close the adapter it came from).
        """
        view = copy.copy(self)
        view.fence = fence
        return view

    async def close(self) -> None:
        """Stop every informer and close the connection."""
        for informer in list(self._informers.values()):
            await informer.stop()
        self._informers.clear()
        await self._transport.close()

    async def __aenter__(self) -> Kube:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @overload
    def informer(self, kind: Literal["pods"], namespace: str) -> Informer[PodInfo]: ...
    @overload
    def informer(
        self, kind: Literal["deployments"], namespace: str
    ) -> Informer[DeploymentInfo]: ...
    @overload
    def informer(self, kind: Literal["services"], namespace: str) -> Informer[ServiceInfo]: ...
    @overload
    def informer(
        self, kind: Literal["endpointslices"], namespace: str
    ) -> Informer[EndpointSliceInfo]: ...
    @overload
    def informer(self, kind: Kind, namespace: str) -> Informer[Any]: ...
    def informer(self, kind: Kind, namespace: str) -> Informer[Any]:
        """The shared informer for ``kind`` in ``namespace`` (created on first use, not started)."""
        key = (kind, namespace)
        informer = self._informers.get(key)
        if informer is None:
            if kind not in BY_KIND:
                raise ValueError(f"no informer for kind {kind!r}; one of {sorted(BY_KIND)}")
            informer = Informer(
                kind, BY_KIND[kind], namespace, _PARSERS[kind], self._transport.fork, self.policy
            )
            self._informers[key] = informer
        return informer


__all__ = ["WRITES", "Fence", "Kube", "selector_string"]
