"""Service calls: the read, and the one patch that flips the selector and writes the state."""

from __future__ import annotations

from collections.abc import Mapping

from controller.core.objects import ServiceInfo, service_info
from controller.shell.kube.base import KubeBase
from controller.shell.kube.errors import Conflict
from controller.shell.kube.resources import SERVICES
from controller.shell.kube.transport import MERGE_PATCH, Obj


class ServiceCalls(KubeBase):
    """GET and optimistic-concurrency PATCH of Services."""

    async def get_service(self, namespace: str, name: str) -> ServiceInfo:
        """GET a Service."""
        return service_info(await self._call("GET", SERVICES, namespace, name))

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
