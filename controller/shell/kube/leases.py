"""Lease calls for leader election: never fenced (they are how leadership is decided)."""

from __future__ import annotations

from datetime import datetime

from controller.core.objects import LeaseInfo, lease_info, lease_spec
from controller.shell.kube.base import KubeBase
from controller.shell.kube.resources import LEASES


class LeaseCalls(KubeBase):
    """GET, CREATE and optimistic-concurrency PUT of Leases."""

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
