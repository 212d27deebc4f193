"""What the controller records rather than acts with: Events, and the history ConfigMaps."""

from __future__ import annotations

from collections.abc import Mapping

import structlog

from controller.core.objects import ObjectRef
from controller.shell.kube.base import KubeBase
from controller.shell.kube.errors import KubeError, NotFound
from controller.shell.kube.events import event_key, event_object, repeat_patch
from controller.shell.kube.resources import CONFIGMAPS, EVENTS
from controller.shell.kube.transport import MERGE_PATCH, Obj

log = structlog.get_logger(__name__)


class RecordCalls(KubeBase):
    """Best-effort, aggregated Events; GET, CREATE/PUT and annotate of ConfigMaps."""

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
        annotations: Mapping[str, str] | None = None,
    ) -> str:
        """CREATE (no ``resource_version``) or PUT a ConfigMap; its new resourceVersion.

        Conflict when it exists already (create) or changed since ``resource_version`` (PUT).
        A PUT replaces labels and annotations with the given ones.
        """
        meta: Obj = {"name": name, "namespace": namespace, "labels": dict(labels or {})}
        if annotations:
            meta["annotations"] = dict(annotations)
        if resource_version:
            meta["resourceVersion"] = resource_version
        body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": dict(data)}
        if resource_version:
            raw = await self._call("PUT", CONFIGMAPS, namespace, name, body=body)
        else:
            raw = await self._call("POST", CONFIGMAPS, namespace, body=body)
        return str(raw["metadata"]["resourceVersion"])

    async def annotate_configmap(
        self, namespace: str, name: str, annotations: Mapping[str, str]
    ) -> str:
        """Set annotations on a ConfigMap (merge patch, no precondition); its new resourceVersion.

        NotFound when there is none. The takeover claim
        (:mod:`controller.shell.reconciler.claim`) writes it to move the resourceVersion without
        sending the data back.
        """
        raw = await self._call(
            "PATCH",
            CONFIGMAPS,
            namespace,
            name,
            body={"metadata": {"annotations": dict(annotations)}},
            content_type=MERGE_PATCH,
        )
        return str(raw["metadata"]["resourceVersion"])
