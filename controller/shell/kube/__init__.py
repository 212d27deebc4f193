"""The only part of ptc that talks to the Kubernetes API (kr8s async underneath).

- :class:`Kube` — connect, reads, writes (scale subresource, Service patch with optimistic
  concurrency, Deployment delete), best-effort Events, Leases, and shared :class:`Informer`\\ s.
- Frozen views: :class:`PodInfo`, :class:`DeploymentInfo`, :class:`ServiceInfo`,
  :class:`EndpointSliceInfo` / :class:`EndpointInfo`, :class:`LeaseInfo`, :class:`ObjectRef`.
- Errors: :class:`KubeError` > :class:`NotFound`, :class:`Conflict`, :class:`Forbidden`
  (> :class:`Unauthorized`), :class:`Invalid`, :class:`Gone`, :class:`NotLeader`,
  :class:`Unavailable`.
- :data:`PERMISSIONS` — the exact RBAC the adapter needs.

Modules: ``client`` (Kube; its calls by kind in ``services``, ``workloads``, ``records`` and
``leases``, all sending through ``base``), ``informer``, ``transport`` (kr8s, timeouts, error
translation), ``policy`` (timeouts, retries, backoff), ``errors``, ``resources``,
``permissions``.
"""

from controller.core.objects import (
    AutoscalerInfo,
    ContainerInfo,
    DeploymentInfo,
    EndpointInfo,
    EndpointSliceInfo,
    FrozenMap,
    LeaseInfo,
    ObjectRef,
    PodInfo,
    ServiceInfo,
)
from controller.core.prestop import PreStopHook
from controller.shell.kube.client import Kube, selector_string
from controller.shell.kube.errors import (
    Conflict,
    Forbidden,
    Gone,
    Invalid,
    KubeError,
    NotFound,
    NotLeader,
    Unauthorized,
    Unavailable,
)
from controller.shell.kube.informer import ADDED, DELETED, MODIFIED, Informer, InformerStats
from controller.shell.kube.permissions import PERMISSIONS, Permission
from controller.shell.kube.policy import KubePolicy
from controller.shell.kube.resources import Kind

__all__ = [
    "ADDED",
    "DELETED",
    "MODIFIED",
    "PERMISSIONS",
    "AutoscalerInfo",
    "Conflict",
    "ContainerInfo",
    "DeploymentInfo",
    "EndpointInfo",
    "EndpointSliceInfo",
    "Forbidden",
    "FrozenMap",
    "Gone",
    "Informer",
    "InformerStats",
    "Invalid",
    "Kind",
    "Kube",
    "KubeError",
    "KubePolicy",
    "LeaseInfo",
    "NotFound",
    "NotLeader",
    "ObjectRef",
    "Permission",
    "PodInfo",
    "PreStopHook",
    "ServiceInfo",
    "Unauthorized",
    "Unavailable",
    "selector_string",
]
