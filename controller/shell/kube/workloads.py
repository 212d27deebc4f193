"""Deployment, Pod and autoscaler calls: reads, scale, the claim's annotation, delete."""

from __future__ import annotations

from collections.abc import Mapping

from controller.core.objects import (
    AutoscalerInfo,
    DeploymentInfo,
    PodInfo,
    autoscaler_info,
    deployment_info,
    pod_info,
)
from controller.shell.kube.base import KubeBase
from controller.shell.kube.resources import AUTOSCALERS, DEPLOYMENTS, PODS
from controller.shell.kube.transport import MERGE_PATCH, Obj

_LIST_PAGE = 500


def selector_string(selector: Mapping[str, str]) -> str:
    """``{"app": "web", "version": "v2"}`` as the label selector ``app=web,version=v2``."""
    return ",".join(f"{k}={v}" for k, v in sorted(selector.items()))


class WorkloadCalls(KubeBase):
    """Reads of Deployments, Pods and HPAs; scale, annotate and delete of Deployments."""

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

    async def annotate_deployment(
        self, namespace: str, name: str, annotations: Mapping[str, str]
    ) -> DeploymentInfo:
        """Set annotations on a Deployment (one merge patch of its metadata, nothing else).

        No precondition: the takeover claim (:mod:`controller.shell.reconciler.claim`) writes
        this to move the Deployment's resourceVersion, whatever it is now. The API server bumps
        ``metadata.generation`` (Deployment annotations are copied to its ReplicaSets), but the
        pod template is untouched: no new ReplicaSet, no pod restarts. An annotation that
        already has the value changes nothing, not even the resourceVersion.
        """
        raw = await self._call(
            "PATCH",
            DEPLOYMENTS,
            namespace,
            name,
            body={"metadata": {"annotations": dict(annotations)}},
            content_type=MERGE_PATCH,
        )
        return deployment_info(raw)

    async def delete_deployment(self, namespace: str, name: str, *, uid: str | None = None) -> None:
        """DELETE a Deployment (its pods are garbage-collected in the background).

        With ``uid``, only that incarnation is deleted (Conflict if the name was reused).
        """
        body: Obj = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"}
        if uid:
            body["preconditions"] = {"uid": uid}
        await self._call("DELETE", DEPLOYMENTS, namespace, name, body=body)
