"""What a reconciler sees: a namespace's caches read into decide()'s `Observed` (no API calls)."""

from __future__ import annotations

from collections.abc import Mapping

from controller.analysis.evaluate import Sample
from controller.config.model import Rollout
from controller.kube import DeploymentInfo, EndpointSliceInfo, Informer, PodInfo, ServiceInfo
from controller.rollout import DeploymentView, Endpoints, Observed, PreflightResult


class Caches:
    """The informers of one namespace."""

    def __init__(
        self,
        pods: Informer[PodInfo],
        deployments: Informer[DeploymentInfo],
        services: Informer[ServiceInfo],
        endpointslices: Informer[EndpointSliceInfo],
    ) -> None:
        self.pods = pods
        self.deployments = deployments
        self.services = services
        self.endpointslices = endpointslices


def deployment_view(caches: Caches, name: str, pending: Mapping[str, int]) -> DeploymentView:
    """Desired replicas (ours until the watch echoes them) and Ready, not terminating pods."""
    dep = caches.deployments.get(name)
    if dep is None:
        return DeploymentView(exists=False)
    spec_replicas = pending.get(name, dep.spec_replicas)
    ready = sum(
        1 for p in caches.pods.items() if p.deployment == name and p.ready and not p.terminating
    )
    return DeploymentView(True, spec_replicas, ready)


def ready_endpoints(spec: Rollout, caches: Caches) -> Endpoints:
    """Ready endpoints behind the rollout's Service, counted by the Deployment owning the pod."""
    by_ip: dict[str, str | None] = {}
    for s in caches.endpointslices.items():
        if s.service != spec.service:
            continue
        for e in s.endpoints:
            if e.ready and not e.terminating:
                by_ip[e.ip] = e.pod
    pods = {p.name: p for p in caches.pods.items()}
    counts = {"canary": 0, "stable": 0, "other": 0}
    for pod_name in by_ip.values():
        pod = pods.get(pod_name) if pod_name else None
        owner = pod.deployment if pod else None
        if owner == spec.canary.deployment:
            counts["canary"] += 1
        elif owner == spec.stable.deployment:
            counts["stable"] += 1
        else:
            counts["other"] += 1
    return Endpoints(**counts)


def observe(
    spec: Rollout,
    caches: Caches,
    svc: ServiceInfo,
    pending: Mapping[str, int],
    *,
    preflight: PreflightResult | None,
    capacity: Sample | None,
    demand: Sample | None,
) -> Observed:
    """Everything decide() needs about the cluster."""
    return Observed(
        stable=deployment_view(caches, spec.stable.deployment, pending),
        canary=deployment_view(caches, spec.canary.deployment, pending),
        selector=dict(svc.selector),
        endpoints=ready_endpoints(spec, caches),
        preflight=preflight,
        capacity=capacity,
        demand=demand,
    )
