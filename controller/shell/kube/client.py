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
"""

from __future__ import annotations

import asyncio
import copy
import socket
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Literal, overload

import structlog

from controller.core.objects import (
    AutoscalerInfo,
    DeploymentInfo,
    EndpointSliceInfo,
    LeaseInfo,
    ObjectRef,
    PodInfo,
    ServiceInfo,
    autoscaler_info,
    deployment_info,
    endpoint_slice_info,
    lease_info,
    lease_spec,
    pod_info,
    service_info,
)
from controller.shell.kube.errors import Conflict, KubeError, NotFound, NotLeader
from controller.shell.kube.events import RepeatTracker, event_key, event_object, repeat_patch
from controller.shell.kube.informer import Informer
from controller.shell.kube.policy import KubePolicy, call_with_retries
from controller.shell.kube.resources import (
    AUTOSCALERS,
    BY_KIND,
    CONFIGMAPS,
    DEPLOYMENTS,
    EVENTS,
    LEASES,
    PODS,
    SERVICES,
    Kind,
    Resource,
)
from controller.shell.kube.transport import MERGE_PATCH, Obj, Transport, describe

log = structlog.get_logger(__name__)

_PARSERS: dict[str, Callable[[Obj], Any]] = {
    "pods": pod_info,
    "deployments": deployment_info,
    "services": service_info,
    "endpointslices": endpoint_slice_info,
}
_LIST_PAGE = 500


def selector_string(selector: Mapping[str, str]) -> str:
    """``{"app": "web", "version": "v2"}`` as the label selector ``app=web,version=v2``."""
    return ",".join(f"{k}={v}" for k, v in sorted(selector.items()))


Fence = Callable[[], float | None]
"""Seconds this process may still write (None or <= 0: it may not), read before each attempt."""

WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class Kube:
    """Kubernetes API adapter (kr8s async underneath); create with :meth:`connect`."""

    def __init__(
        self,
        transport: Transport,
        policy: KubePolicy,
        *,
        clock: Callable[[], datetime] | None = None,
        instance: str | None = None,
    ) -> None:
        self._transport = transport
        self.policy = policy
        self._clock = clock or (lambda: datetime.now(UTC))
        self.instance = instance or socket.gethostname()
        self._informers: dict[tuple[str, str], Informer[Any]] = {}
        self._events = RepeatTracker()
        self.fence: Fence | None = None  # set by the daemon when leader election is on
        self.retries = 0  # Unavailable answers retried, for metrics

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

    # --- reads -----------------------------------------------------------------------------

    async def get_service(self, namespace: str, name: str) -> ServiceInfo:
        """GET a Service."""
        return service_info(await self._call("GET", SERVICES, namespace, name))

    async def get_deployment(self, namespace: str, name: str) -> DeploymentInfo:
        """GET a Deployment."""
        return deployment_info(await self._call("GET", DEPLOYMENTS, namespace, name))

    async def list_pods(self, namespace: str, selector: Mapping[str, str]) -> list[PodInfo]:
        """LIST the pods matching an equality selector (all pods when empty), sorted by name."""
        pods: list[PodInfo] = []
        params: dict[str, str | int] = {"limit": _LIST_PAGE}
        if selector:
            params["labelSelector"] = selector_string(selector)
        while True:
            page = await self._call("GET", PODS, namespace, params=params)
            pods.extend(pod_info(raw) for raw in page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return sorted(pods, key=lambda p: p.name)
            params = {**params, "continue": token}

    async def list_autoscalers(self, namespace: str) -> list[AutoscalerInfo]:
        """LIST the namespace's HorizontalPodAutoscalers (preflight: none may scale ours)."""
        page = await self._call("GET", AUTOSCALERS, namespace, params={"limit": _LIST_PAGE})
        return [autoscaler_info(raw) for raw in page.get("items") or []]

    # --- writes ----------------------------------------------------------------------------

    async def scale(
        self, namespace: str, deployment: str, replicas: int, *, resource_version: str = ""
    ) -> str:
        """Set ``spec.replicas`` through the ``scale`` subresource (returns without waiting).

        With ``resource_version`` (the Deployment's, which its Scale shares), only if the
        Deployment is still at it: Conflict otherwise, so a write decided on a stale view (or by
        a deposed leader, after the new one acted) does not land.

        Returns the Deployment's resourceVersion after the write (the Scale carries it), for
        telling when the watch has echoed it; "" if the server sent none.
        """
        if replicas < 0:
            raise ValueError(f"replicas must be >= 0, got {replicas}")
        body: Obj = {"spec": {"replicas": replicas}}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        scale = await self._call(
            "PATCH",
            DEPLOYMENTS,
            namespace,
            deployment,
            "scale",
            body=body,
            content_type=MERGE_PATCH,
        )
        return str((scale.get("metadata") or {}).get("resourceVersion") or "")

    async def patch_service(
        self,
        namespace: str,
        name: str,
        *,
        resource_version: str,
        selector: Mapping[str, str] | None = None,
        annotations: Mapping[str, str | None] | None = None,
    ) -> ServiceInfo:
        """Change a Service in one merge patch, only if it is still at ``resource_version``.

        A given ``selector`` replaces the whole selector (keys not in it are removed); an
        annotation set to None is removed, others are set, unmentioned ones are kept. Raises
        Conflict when the Service changed since ``resource_version``. When an earlier attempt of
        this call timed out and the retry meets a Conflict, the Service is re-read: if it
        already shows the requested selector and annotations (our write landed), that is success.
        """
        if not resource_version:
            raise ValueError("resource_version is required (optimistic concurrency)")
        body: Obj = {"metadata": {"resourceVersion": resource_version}}
        if annotations:
            body["metadata"]["annotations"] = dict(annotations)
        if selector is not None:
            current = await self._selector_at(namespace, name, resource_version)
            # a merge patch merges maps: dropping a key takes an explicit null
            body["spec"] = {
                "selector": {**{k: None for k in current if k not in selector}, **selector}
            }
        retried: list[bool] = []  # an attempt failed after the request may have been applied
        try:
            raw = await self._call(
                "PATCH",
                SERVICES,
                namespace,
                name,
                body=body,
                content_type=MERGE_PATCH,
                on_retry=lambda: retried.append(True),
            )
        except Conflict:
            if not retried:
                raise
            now = await self.get_service(namespace, name)
            if not _applied(now, selector, annotations):
                raise
            return now
        return service_info(raw)

    async def delete_deployment(self, namespace: str, name: str, *, uid: str | None = None) -> None:
        """DELETE a Deployment (its pods are garbage-collected in the background).

        With ``uid``, only that incarnation is deleted (Conflict if the name was reused).
        """
        body: Obj = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"}
        if uid:
            body["preconditions"] = {"uid": uid}
        await self._call("DELETE", DEPLOYMENTS, namespace, name, body=body)

    async def emit_event(
        self,
        namespace: str,
        involved: ObjectRef,
        type: str,
        reason: str,
        message: str,
        *,
        component: str = "ptc",
    ) -> bool:
        """Record a core v1 Event (``type`` Normal or Warning); best effort: failures are logged.

        An identical Event (same object, type, reason and message) within the last 10 minutes
        bumps the recorded one's ``count`` and ``lastTimestamp`` instead of adding another, as
        client-go's recorder does. One attempt, no retries: an Event is never worth delaying a
        rollout for. Returns whether the Event was recorded.
        """
        now = self._clock()
        key = event_key(namespace, involved, type, reason, message)
        try:
            seen = self._events.repeat_of(key, now)
            if seen is not None:
                try:
                    await self._transport.request(
                        "PATCH",
                        EVENTS,
                        namespace,
                        seen.name,
                        body=repeat_patch(seen.count + 1, now),
                        content_type=MERGE_PATCH,
                    )
                except NotFound:
                    self._events.forget(key)  # expired on the server (event TTL): record anew
                else:
                    self._events.recorded(key, seen.name, seen.count + 1, now)
                    return True
            event = event_object(
                namespace,
                involved,
                type,
                reason,
                message,
                component=component,
                instance=self.instance,
                when=now,
            )
            await self._transport.request("POST", EVENTS, namespace, body=event)
            self._events.recorded(key, event["metadata"]["name"], 1, now)
        except KubeError as e:
            log.warning(
                "event not recorded",
                namespace=namespace,
                involved=f"{involved.kind}/{involved.name}",
                reason=reason,
                error=str(e),
            )
            return False
        return True

    # --- configmaps (the decision history) --------------------------------------------------

    async def get_configmap(self, namespace: str, name: str) -> tuple[dict[str, str], str]:
        """GET a ConfigMap's data and resourceVersion (NotFound when there is none)."""
        raw = await self._call("GET", CONFIGMAPS, namespace, name)
        data = raw.get("data") or {}
        return {str(k): str(v) for k, v in data.items()}, str(raw["metadata"]["resourceVersion"])

    async def write_configmap(
        self,
        namespace: str,
        name: str,
        data: Mapping[str, str],
        *,
        resource_version: str | None,
        labels: Mapping[str, str] | None = None,
    ) -> str:
        """CREATE (no ``resource_version``) or PUT a ConfigMap; its new resourceVersion.

        Conflict when it exists already (create) or changed since ``resource_version`` (PUT).
        """
        meta: Obj = {"name": name, "namespace": namespace, "labels": dict(labels or {})}
        if resource_version:
            meta["resourceVersion"] = resource_version
        body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": dict(data)}
        if resource_version:
            raw = await self._call("PUT", CONFIGMAPS, namespace, name, body=body)
        else:
            raw = await self._call("POST", CONFIGMAPS, namespace, body=body)
        return str(raw["metadata"]["resourceVersion"])

    # --- leases (leader election) ------------------------------------------------------------

    async def get_lease(self, namespace: str, name: str) -> LeaseInfo:
        """GET a Lease (NotFound when nobody created it yet)."""
        return lease_info(await self._call("GET", LEASES, namespace, name))

    async def create_lease(
        self,
        namespace: str,
        name: str,
        *,
        holder: str | None,
        duration_seconds: int | None,
        acquire_time: datetime | None,
        renew_time: datetime | None,
        transitions: int = 0,
    ) -> LeaseInfo:
        """CREATE a Lease (Conflict when it already exists)."""
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": name, "namespace": namespace},
            "spec": lease_spec(holder, duration_seconds, acquire_time, renew_time, transitions),
        }
        return lease_info(await self._call("POST", LEASES, namespace, body=body, fenced=False))

    async def update_lease(
        self,
        namespace: str,
        name: str,
        *,
        resource_version: str,
        holder: str | None,
        duration_seconds: int | None,
        acquire_time: datetime | None,
        renew_time: datetime | None,
        transitions: int,
    ) -> LeaseInfo:
        """PUT a Lease's spec, only if it is still at ``resource_version`` (else Conflict)."""
        if not resource_version:
            raise ValueError("resource_version is required (optimistic concurrency)")
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": name, "namespace": namespace, "resourceVersion": resource_version},
            "spec": lease_spec(holder, duration_seconds, acquire_time, renew_time, transitions),
        }
        return lease_info(await self._call("PUT", LEASES, namespace, name, body=body, fenced=False))

    # --- informers ---------------------------------------------------------------------------

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

    # --- plumbing ----------------------------------------------------------------------------

    async def _selector_at(
        self, namespace: str, name: str, resource_version: str
    ) -> Mapping[str, str]:
        """The Service's selector at ``resource_version``: from the informer, else one GET."""
        cached = self._informers.get(("services", namespace))
        if cached is not None and cached.synced:
            known = cached.get(name)
            if isinstance(known, ServiceInfo) and known.resource_version == resource_version:
                return known.selector
        current = await self.get_service(namespace, name)
        if current.resource_version != resource_version:
            # the precondition would fail on the server too; do not send a doomed write
            raise Conflict(
                f"patch services {namespace}/{name}: the object has been modified "
                f"(resourceVersion {resource_version} is stale, now "
                f"{current.resource_version})",
                status=409,
                reason="Conflict",
            )
        return current.selector

    async def _call(
        self,
        method: str,
        resource: Resource,
        namespace: str,
        name: str | None = None,
        subresource: str | None = None,
        *,
        params: Mapping[str, str | int] | None = None,
        body: Any = None,
        content_type: str | None = None,
        on_retry: Callable[[], None] | None = None,
        fenced: bool = True,
    ) -> Obj:
        """One request, retried on Unavailable (see :func:`call_with_retries`); writes fenced."""
        fence = self.fence if fenced and method in WRITES else None
        what = describe(method, resource, namespace, name, subresource)

        async def attempt() -> Obj:
            request = self._transport.request(
                method,
                resource,
                namespace,
                name,
                subresource,
                params=params,
                body=body,
                content_type=content_type,
            )
            if fence is None:
                return await request
            left = fence()
            if left is None or left <= 0:
                request.close()  # never started: nothing was sent
                raise NotLeader(f"{what}: not sent, this process is no longer the leader")
            try:
                async with asyncio.timeout(left):
                    return await request
            except TimeoutError:
                # The transport's own timeout raises Unavailable, so this one is ours.
                raise NotLeader(
                    f"{what}: cut short when leadership ran out ({left:.1f}s left at send); "
                    "it may or may not have been applied"
                ) from None

        def retrying() -> None:
            self.retries += 1
            if on_retry is not None:
                on_retry()

        return await call_with_retries(self.policy, attempt, what, retrying)


def _applied(
    service: ServiceInfo,
    selector: Mapping[str, str] | None,
    annotations: Mapping[str, str | None] | None,
) -> bool:
    """Whether a Service already shows a requested selector and annotation changes."""
    if selector is not None and dict(service.selector) != dict(selector):
        return False
    wanted = annotations or {}
    return all(service.annotations.get(key) == value for key, value in wanted.items())
