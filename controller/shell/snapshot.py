"""What a reconciler sees: a namespace's caches read into decide()'s `Observed` (no API calls).

Every read goes through an index (pods by Deployment and by ``label=value``, EndpointSlices by
Service), so one reconcile costs the size of its own rollout, not of the namespace: hundreds of
rollouts sharing a namespace do not make each other's reconciles slower. The direct metrics
provider's scrape targets (a side's Ready pods) are read from the same caches.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from controller.core.analysis.evaluate import Sample
from controller.core.analysis.share import ShareReading
from controller.core.config.model import Rollout, Side
from controller.core.rollout import DeploymentView, Endpoints, Observed, PreflightResult
from controller.shell.kube import DeploymentInfo, EndpointSliceInfo, Informer, PodInfo, ServiceInfo
from controller.shell.providers.scrape import PodTarget

POD_BY_DEPLOYMENT = "deployment"
POD_BY_LABEL = "label"
SLICE_BY_SERVICE = "service"


def _pod_deployment(pod: PodInfo) -> Iterable[str]:
    return (pod.deployment,) if pod.deployment else ()


def _pod_labels(pod: PodInfo) -> Iterable[str]:
    # "=" cannot occur in a label key, so "key=value" is unambiguous
    return (f"{k}={v}" for k, v in pod.labels.items())


def _slice_service(s: EndpointSliceInfo) -> Iterable[str]:
    return (s.service,) if s.service else ()


class Caches:
    """The informers of one namespace, with the indexes the reconcilers read."""

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
        pods.add_index(POD_BY_DEPLOYMENT, _pod_deployment)
        pods.add_index(POD_BY_LABEL, _pod_labels)
        endpointslices.add_index(SLICE_BY_SERVICE, _slice_service)

    def pods_of(self, *deployments: str) -> list[PodInfo]:
        """The cached pods owned (through a ReplicaSet) by any of these Deployments."""
        return [
            p for d in dict.fromkeys(deployments) for p in self.pods.by_index(POD_BY_DEPLOYMENT, d)
        ]

    def pods_matching(self, selector: Mapping[str, str]) -> list[PodInfo]:
        """The cached pods an equality selector matches (none for an empty selector).

        Reads the smallest ``label=value`` bucket of the selector and filters it by the rest.
        """
        if not selector:
            return []
        keys = [f"{k}={v}" for k, v in selector.items()]
        rarest = min(keys, key=lambda key: self.pods.index_size(POD_BY_LABEL, key))
        return [
            p
            for p in self.pods.by_index(POD_BY_LABEL, rarest)
            if all(p.labels.get(k) == v for k, v in selector.items())
        ]


def deployment_view(caches: Caches, name: str, pending: Mapping[str, int]) -> DeploymentView:
    """Desired replicas (ours until the watch echoes them) and Ready, not terminating pods."""
    dep = caches.deployments.get(name)
    if dep is None:
        return DeploymentView(exists=False)
    spec_replicas = pending.get(name, dep.spec_replicas)
    ready = sum(1 for p in caches.pods_of(name) if p.ready and not p.terminating)
    return DeploymentView(True, spec_replicas, ready, uid=dep.uid)


def ready_endpoints(spec: Rollout, caches: Caches) -> Endpoints:
    """Ready endpoints behind the rollout's Service, counted by the Deployment owning the pod."""
    by_ip: dict[str, str | None] = {}
    for s in caches.endpointslices.by_index(SLICE_BY_SERVICE, spec.service):
        for e in s.endpoints:
            if e.ready and not e.terminating:
                by_ip[e.ip] = e.pod
    counts = {"canary": 0, "stable": 0, "other": 0}
    for pod_name in by_ip.values():
        pod = caches.pods.get(pod_name) if pod_name else None
        owner = pod.deployment if pod else None
        if owner == spec.canary.deployment:
            counts["canary"] += 1
        elif owner == spec.stable.deployment:
            counts["stable"] += 1
        else:
            counts["other"] += 1
    return Endpoints(**counts)


def preflight_pods(spec: Rollout, caches: Caches, shared: Mapping[str, str]) -> list[PodInfo]:
    """The pods the preflight judges: both Deployments' and any the shared selector matches.

    A superset of what :func:`controller.shell.preflight.check_world` looks at (canary's pods and
    the shared selector's strays), without walking the namespace.
    """
    found = {p.name: p for p in caches.pods_of(spec.stable.deployment, spec.canary.deployment)}
    found.update((p.name, p) for p in caches.pods_matching(shared))
    return [found[name] for name in sorted(found)]


def read_observed(
    spec: Rollout,
    caches: Caches,
    svc: ServiceInfo,
    pending: Mapping[str, int],
    *,
    preflight: PreflightResult | None,
    capacity: Sample | None,
    demand: Sample | None,
    share: ShareReading | None = None,
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
        share=share,
    )


def pod_targets(caches: Caches | None, rollout: Rollout, side: Side) -> list[PodTarget]:
    """The direct provider's scrape targets: the side's Ready pods, from the caches."""
    if caches is None:
        return []
    wanted = {
        Side.CANARY: {rollout.canary.deployment},
        Side.STABLE: {rollout.stable.deployment},
        Side.SERVICE: {rollout.canary.deployment, rollout.stable.deployment},
    }[side]
    targets = []
    for pod in sorted(caches.pods_of(*sorted(wanted)), key=lambda p: p.name):
        if not pod.ready or not pod.ip:
            continue
        port = rollout.preflight.port or (pod.container_ports[0] if pod.container_ports else 0)
        if port:
            targets.append(
                PodTarget(
                    pod.name,
                    pod.ip,
                    port,
                    rollout.preflight.metrics_path,
                    {"namespace": pod.namespace},
                )
            )
    return targets
