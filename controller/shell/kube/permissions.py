"""Every API permission the adapter needs, in one place (the Helm chart's RBAC is tested on it).

``tests/integration/test_kube_rbac.py`` runs every adapter operation with a token limited to
exactly these permissions (no 403, and every request it made is covered) and shows that removing
any single (group, resource, verb) makes some operation fail.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Permission:
    """One RBAC PolicyRule: verbs on a resource (``deployments/scale`` names a subresource)."""

    api_group: str
    resource: str
    verbs: tuple[str, ...]


PERMISSIONS: tuple[Permission, ...] = (
    # list_pods; the pods informer
    Permission("", "pods", ("list", "watch")),
    # get_service, patch_service (reads the current selector to null dropped keys); informer
    Permission("", "services", ("get", "list", "watch", "patch")),
    # emit_event (core v1 Events): create, and patch to count a repeat; in every rollout's
    # namespace and, for Events about the controller itself (on its Lease), the Lease's
    Permission("", "events", ("create", "patch")),
    # get_deployment, delete_deployment (see DELETE_STABLE); the deployments informer;
    # annotate_deployment: a takeover's claim (controller.shell.reconciler.claim), metadata only
    Permission("apps", "deployments", ("get", "list", "watch", "patch", "delete")),
    # scale (PATCH of the scale subresource, never the whole Deployment)
    Permission("apps", "deployments/scale", ("patch",)),
    # list_autoscalers: preflight refuses a rollout whose Deployments an HPA scales
    Permission("autoscaling", "horizontalpodautoscalers", ("list",)),
    # the endpointslices informer
    Permission("discovery.k8s.io", "endpointslices", ("list", "watch")),
    # the decision history (ptc-history-<service>): get_configmap, write_configmap; with
    # sharding also the replicas' heartbeat (<lease>-members) in the Leases' namespace;
    # annotate_configmap: a takeover's claim of the history ConfigMap
    Permission("", "configmaps", ("get", "create", "update", "patch")),
    # leader election: get_lease, create_lease, update_lease (PUT with resourceVersion)
    Permission("coordination.k8s.io", "leases", ("get", "create", "update")),
)


# Needed only where a rollout sets retention.deleteStable: the chart grants it nowhere else.
DELETE_STABLE: tuple[str, str, str] = ("apps", "deployments", "delete")


def triples(permissions: tuple[Permission, ...] = PERMISSIONS) -> Iterator[tuple[str, str, str]]:
    """Each (api_group, resource, verb) granted, one per verb."""
    for p in permissions:
        for verb in p.verbs:
            yield (p.api_group, p.resource, verb)
