"""The sandbox's kubelet (and scheduler): runs pods through the pluggable pod runtime.

A pod without ``spec.nodeName`` is bound to the node. A bound pod is started with
``runtime.start_pod`` (which returns its IP), reported Running with Ready=False, then Ready=True
after the ready delay. A pod removed outright (grace period 0) is stopped as soon as it is gone.

A pod with a ``deletionTimestamp`` is shut down as the real kubelet does, while the EndpointSlice
controller marks its endpoint terminating (clients see that a moment later, see
:mod:`controller.sandbox.kubeproxy`): it goes Ready=False; its serving container's ``preStop``
hook runs — a ``sleep`` action or an ``exec`` of ``sleep N`` waits that long, any other hook
returns at once — cut short by ``deletionGracePeriodSeconds``; then SIGTERM, at which the
simulated zai-proxy exits at once like the real one (``runtime.stop_pod``: connections refused,
requests in flight reset). ``termination_grace`` later (capped by what is left of the grace
period) the pod object is removed. Delays run on the event loop clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from controller.sandbox import apierrors as errors
from controller.sandbox.hooks import pre_stop_delay
from controller.sandbox.kinds import PODS
from controller.sandbox.registry import Registry, rfc3339
from controller.tasks import cancel_and_wait

if TYPE_CHECKING:
    from controller.sandbox.workload import PodRuntime

Obj = dict[str, Any]
log = logging.getLogger(__name__)


def owner_replica_set(pod: Obj) -> Obj | None:
    """The pod's controlling ReplicaSet ownerReference, if any."""
    for ref in pod["metadata"].get("ownerReferences") or []:
        if ref.get("kind") == "ReplicaSet" and ref.get("controller"):
            return dict(ref)
    return None


def _now() -> str:
    return rfc3339(datetime.now(UTC))


class Kubelet:
    """Pod lifecycle on one simulated node; see the module docstring."""

    def __init__(
        self,
        registry: Registry,
        runtime: PodRuntime,
        node_name: str,
        ready_delay: float,
        termination_grace: float,
    ) -> None:
        self.registry = registry
        self.store = registry.store
        self.runtime = runtime
        self.node_name = node_name
        self.ready_delay = ready_delay
        self.termination_grace = termination_grace
        self.ready_delays: dict[str, float] = {}
        self._pod_tasks: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._started: dict[tuple[str, str], str] = {}  # pod -> deployment, once start_pod returned

    async def stop(self) -> None:
        """Cancel pod lifecycles and stop every pod started in the runtime."""
        await cancel_and_wait(*self._pod_tasks.values())
        self._pod_tasks.clear()
        for ns, name in list(self._started):
            await self.runtime.stop_pod(ns, name)
        self._started.clear()

    def sync_pod(self, pod: Obj) -> None:
        """React to a pod's latest state: bind, start, or begin terminating it."""
        meta = pod["metadata"]
        key = (meta["namespace"], meta["name"])
        node = (pod.get("spec") or {}).get("nodeName")
        if not node:
            with contextlib.suppress(errors.ApiError):
                self.registry.bind(PODS, key[0], key[1], self.node_name)
            return  # the bind's own event brings the pod back here
        if node != self.node_name:
            return
        task = self._pod_tasks.get(key)
        if "deletionTimestamp" in meta:
            if task is None or task.get_name() != f"terminate:{key}":
                self._pod_tasks[key] = asyncio.create_task(
                    self._terminate(key, task), name=f"terminate:{key}"
                )
        elif task is None and key not in self._started:
            self._pod_tasks[key] = asyncio.create_task(self._run_pod(pod), name=f"run:{key}")

    async def _run_pod(self, pod: Obj) -> None:
        ns, name = key = pod["metadata"]["namespace"], pod["metadata"]["name"]
        owner = owner_replica_set(pod)
        deployment = owner["name"].rsplit("-", 1)[0] if owner else ""
        try:
            ip = await self.runtime.start_pod(copy.deepcopy(pod), deployment)
        except Exception as e:  # a runtime failure fails the pod, like a crashing container
            log.warning("runtime could not start pod %s/%s: %s", ns, name, e)
            failure = str(e)
            self._set_status(
                ns, name, lambda s: s.update(phase="Failed", reason="StartError", message=failure)
            )
            return
        self._started[key] = deployment
        if self.store.get(PODS.key, ns, name) is None:  # force-deleted while starting
            self._started.pop(key, None)
            await self.runtime.stop_pod(ns, name)
            return
        if self._terminating(key):
            return  # the termination task takes it from here
        self._set_status(ns, name, lambda s: _running_status(s, pod, ip, ready=False))
        await asyncio.sleep(self.ready_delays.get(deployment, self.ready_delay))
        if not self._terminating(key):
            self._set_status(ns, name, lambda s: _running_status(s, pod, ip, ready=True))

    def _terminating(self, key: tuple[str, str]) -> bool:
        pod = self.store.get(PODS.key, *key)
        return pod is None or "deletionTimestamp" in pod["metadata"]

    async def _terminate(self, key: tuple[str, str], previous: asyncio.Task[None] | None) -> None:
        if previous is not None and not previous.done():
            if key in self._started:
                previous.cancel()  # only the readiness timer was left
            else:
                # let a start in progress finish so the runtime never keeps a half-started pod
                await asyncio.wait([previous])
        ns, name = key
        pod = self.store.get(PODS.key, ns, name)
        if pod is None:
            return
        self._set_status(ns, name, _mark_not_ready)
        grace = float(pod["metadata"].get("deletionGracePeriodSeconds", 0))
        hook = min(pre_stop_delay(pod), grace)  # the grace period counts from the deletion
        if hook > 0:
            await asyncio.sleep(hook)
        # SIGTERM: zai-proxy has no graceful shutdown, so it stops answering right here.
        if self._started.pop(key, None) is not None:
            await self.runtime.stop_pod(ns, name)
        await asyncio.sleep(min(self.termination_grace, grace - hook))
        with contextlib.suppress(errors.ApiError):
            self.registry.delete(PODS, ns, name, {"gracePeriodSeconds": 0})
        self._pod_tasks.pop(key, None)

    def forget(self, ns: str, name: str) -> None:
        """The pod is gone from the store: stop it in the runtime if it was started."""
        key = (ns, name)
        task = self._pod_tasks.get(key)
        if task is not None and task.get_name().startswith("run:"):
            if key not in self._started:
                return  # still starting: _run_pod sees the pod gone and stops it
            task.cancel()
        if task is None or task.done() or task.get_name().startswith("run:"):
            self._pod_tasks.pop(key, None)
            if self._started.pop(key, None) is not None:
                self._pod_tasks[key] = asyncio.create_task(self._stop_only(key), name=f"stop:{key}")

    async def _stop_only(self, key: tuple[str, str]) -> None:
        await self.runtime.stop_pod(*key)
        self._pod_tasks.pop(key, None)

    def _set_status(self, ns: str, name: str, mutate: Any) -> None:
        pod = self.store.get(PODS.key, ns, name)
        if pod is None:
            return
        new = copy.deepcopy(pod)
        status = new.setdefault("status", {})
        mutate(status)
        with contextlib.suppress(errors.ApiError):
            self.registry.update(PODS, ns, name, new, "status")


def _pod_conditions(
    status: Obj, ready: bool, reason: str = "ContainersNotReady", message: str = ""
) -> list[Obj]:
    old = {c.get("type"): c for c in status.get("conditions") or []}
    now = _now()

    def cond(ctype: str, ok: bool) -> Obj:
        value = "True" if ok else "False"
        prev = old.get(ctype)
        c: Obj = {
            "type": ctype,
            "status": value,
            "lastProbeTime": None,
            "lastTransitionTime": prev["lastTransitionTime"]
            if prev and prev.get("status") == value
            else now,
        }
        if not ok:
            c.update(reason=reason, message=message)
        return c

    return [
        cond("PodReadyToStartContainers", True),
        cond("Initialized", True),
        cond("Ready", ready),
        cond("ContainersReady", ready),
        cond("PodScheduled", True),
    ]


def _running_status(status: Obj, pod: Obj, ip: str, ready: bool) -> None:
    containers = [c.get("name", "") for c in (pod.get("spec") or {}).get("containers") or []]
    message = "" if ready else f"containers with unready status: [{' '.join(containers)}]"
    started = status.get("startTime") or _now()
    status.update(
        phase="Running",
        hostIP="127.0.0.1",
        hostIPs=[{"ip": "127.0.0.1"}],
        podIP=ip,
        podIPs=[{"ip": ip}],
        startTime=started,
        conditions=_pod_conditions(status, ready, message=message),
        containerStatuses=[
            {
                "name": c.get("name", ""),
                "image": c.get("image", ""),
                "imageID": "",
                "containerID": f"sandbox://{pod['metadata']['uid']}/{c.get('name', '')}",
                "ready": ready,
                "started": True,
                "restartCount": 0,
                "state": {"running": {"startedAt": started}},
            }
            for c in (pod.get("spec") or {}).get("containers") or []
        ],
    )


def _mark_not_ready(status: Obj) -> None:
    status["conditions"] = _pod_conditions(
        status, False, reason="PodTerminating", message="pod is terminating"
    )
    for cs in status.get("containerStatuses") or []:
        cs["ready"] = False
