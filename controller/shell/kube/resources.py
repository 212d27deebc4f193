"""The resource types the adapter uses, declared explicitly (no kr8s discovery lookups).

kr8s resolves string kinds through server discovery; we never do. Each :class:`Resource` is
built from a kr8s object class: kr8s's own for Pods, Deployments, Services and core Events, and
``new_class`` declarations for the kinds kr8s lacks (EndpointSlice, Lease).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from kr8s.asyncio.objects import ConfigMap, Deployment, Event, Pod, Service, new_class

EndpointSlice = new_class(
    "EndpointSlice", version="discovery.k8s.io/v1", namespaced=True, plural="endpointslices"
)
Lease = new_class("Lease", version="coordination.k8s.io/v1", namespaced=True, plural="leases")
HorizontalPodAutoscaler = new_class(
    "HorizontalPodAutoscaler",
    version="autoscaling/v2",
    namespaced=True,
    plural="horizontalpodautoscalers",
)

Kind = Literal["pods", "deployments", "services", "endpointslices"]
"""The kinds an :class:`~controller.shell.kube.informer.Informer` can cache."""


@dataclass(frozen=True)
class Resource:
    """Where a kind lives in the API: ``/api[s]/<api_version>/namespaces/<ns>/<plural>``."""

    api_version: str
    plural: str
    kind: str

    @property
    def group(self) -> str:
        """The API group (``""`` for core)."""
        return self.api_version.rpartition("/")[0]

    @classmethod
    def of(cls, kr8s_class: Any) -> Resource:
        """The resource behind a kr8s APIObject class."""
        return cls(str(kr8s_class.version), str(kr8s_class.endpoint), str(kr8s_class.kind))

    def path(self, name: str | None = None, subresource: str | None = None) -> str:
        """The part of the URL after the namespace."""
        parts = [self.plural, *(p for p in (name, subresource) if p)]
        return "/".join(parts)


PODS = Resource.of(Pod)
DEPLOYMENTS = Resource.of(Deployment)
SERVICES = Resource.of(Service)
EVENTS = Resource.of(Event)
ENDPOINTSLICES = Resource.of(EndpointSlice)
LEASES = Resource.of(Lease)
AUTOSCALERS = Resource.of(HorizontalPodAutoscaler)
CONFIGMAPS = Resource.of(ConfigMap)

BY_KIND: dict[str, Resource] = {
    "pods": PODS,
    "deployments": DEPLOYMENTS,
    "services": SERVICES,
    "endpointslices": ENDPOINTSLICES,
}
