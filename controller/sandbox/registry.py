"""Request semantics of the API server, independent of HTTP (the generic registry, in small).

:class:`Registry` implements create / get / list / update / patch / delete (and the ``status``
and ``scale`` subresources) on top of :class:`~controller.sandbox.store.Store`, the way kube's
``genericregistry.Store`` + ``rest.BeforeCreate/BeforeUpdate`` + the kinds' strategies do:

- create: generateName, system fields (uid, creationTimestamp, resourceVersion), defaulting,
  status reset, generation 1 where tracked, validation (422), AlreadyExists (409);
- update (PUT): optimistic concurrency on ``metadata.resourceVersion`` (409 Conflict; empty means
  unconditional), immutable system fields, status kept from the stored object (the main resource
  cannot write status; ``/status`` can write nothing else), generation bumped by kind rules, and
  a no-op write leaves the object and its resourceVersion untouched (no watch event);
- patch: merge / JSON / strategic merge applied to the stored object, then the update path; a
  ``metadata.resourceVersion`` in the patch is the same precondition as on PUT;
- delete: Status or the object (by kind), graceful deletion for Pods;
- empty ``labels``, ``annotations``, ``finalizers``, ``ownerReferences`` are not stored (Go's
  omitempty): an object whose last annotation was removed has no ``annotations`` key.

The HTTP layer (:mod:`controller.sandbox.apiserver`) and the workload simulator both write
through this class, so the simulator's writes obey the same rules as the controller's. Beside
it: :mod:`~controller.sandbox.paging` (continue tokens), :mod:`~controller.sandbox.scale` (the
Scale view), :mod:`~controller.sandbox.deletion` (grace periods, the Status answered).
"""

from __future__ import annotations

import copy
import ipaddress
import json
import random
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from controller.sandbox import apierrors as errors
from controller.sandbox.deletion import deleted_status, grace_period
from controller.sandbox.kinds import DEPLOYMENTS, ResourceType, selectable_fields
from controller.sandbox.paging import continue_token_after, page_start
from controller.sandbox.patch import (
    PatchApplyError,
    PatchFormatError,
    json_equal,
    json_patch,
    merge_patch,
    strategic_merge_patch,
)
from controller.sandbox.requestinfo import check_identity
from controller.sandbox.scale import parse_scale, scale_of
from controller.sandbox.selectors import (
    SelectorError,
    parse_field_selector,
    parse_label_selector,
)
from controller.sandbox.store import Store, Watch
from controller.sandbox.validation import validate

Obj = dict[str, Any]

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
PATCH_TYPES = [JSON_PATCH, MERGE_PATCH, APPLY_PATCH, STRATEGIC_PATCH]

NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
"""The alphabet of ``k8s.io/apimachinery/pkg/util/rand`` (no vowels, no look-alikes)."""


def rfc3339(t: datetime) -> str:
    """Kubernetes timestamp format (second precision, ``Z``)."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def random_suffix(rng: random.Random, n: int = 5) -> str:
    """A name suffix like the real name generator's."""
    return "".join(rng.choice(NAME_ALPHABET) for _ in range(n))


# ObjectMeta fields a real API server stores and returns only when non-empty (Go's omitempty):
# removing an object's last annotation leaves no `annotations` key, not `annotations: {}`.
_OMITTED_WHEN_EMPTY = ("labels", "annotations", "finalizers", "ownerReferences")


def _omit_empty_meta(obj: Obj) -> None:
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        for key in _OMITTED_WHEN_EMPTY:
            if key in meta and meta[key] in ({}, [], None):
                del meta[key]


def _strip_rv(obj: Obj) -> Obj:
    out = dict(obj)
    out["metadata"] = {
        k: v
        for k, v in obj.get("metadata", {}).items()
        if k not in ("resourceVersion", "managedFields")
    }
    return out


class Registry:
    """CRUD with the real server's rules over a :class:`Store`."""

    def __init__(
        self, store: Store, *, now: Callable[[], datetime] | None = None, seed: int | None = None
    ) -> None:
        self.store = store
        self._now = now or (lambda: datetime.now(UTC))
        self._rng = random.Random(seed)
        self._cluster_ips = ipaddress.ip_network("10.96.0.0/16").hosts()
        next(self._cluster_ips)  # 10.96.0.1 belongs to the kubernetes Service

    # --- reads ---------------------------------------------------------------------------

    def get(self, rt: ResourceType, namespace: str, name: str) -> Obj:
        """A copy of the object, or 404."""
        obj = self.store.get(rt.key, namespace, name)
        if obj is None:
            raise errors.not_found(rt.group, rt.plural, name)
        return copy.deepcopy(obj)

    def selector_predicate(
        self, rt: ResourceType, label_selector: str | None, field_selector: str | None
    ) -> Callable[[Obj], bool] | None:
        """A predicate for list/watch filtering; 400 BadRequest on a malformed selector."""
        try:
            labels = parse_label_selector(label_selector)
            fields = parse_field_selector(field_selector, rt.field_labels)
        except SelectorError as e:
            raise errors.bad_request(str(e)) from e
        if labels.empty() and not fields.requirements:
            return None
        return lambda o: (
            labels.matches(o["metadata"].get("labels")) and fields.matches(selectable_fields(rt, o))
        )

    def list(
        self,
        rt: ResourceType,
        namespace: str | None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int | None = None,
        continue_token: str | None = None,
    ) -> Obj:
        """A ``<Kind>List`` with ``metadata.resourceVersion``; supports limit/continue paging."""
        pred = self.selector_predicate(rt, label_selector, field_selector)
        items = [o for o in self.store.list(rt.key, namespace) if pred is None or pred(o)]
        meta: Obj = {"resourceVersion": str(self.store.resource_version)}
        if continue_token:
            start = page_start(continue_token, self.store.oldest_watchable)
            items = [
                o
                for o in items
                if (o["metadata"].get("namespace", ""), o["metadata"]["name"]) > start
            ]
        if limit and limit > 0 and len(items) > limit:
            last = items[limit - 1]["metadata"]
            meta["continue"] = continue_token_after(self.store.resource_version, last)
            meta["remainingItemCount"] = len(items) - limit
            items = items[:limit]
        return {
            "kind": f"{rt.kind}List",
            "apiVersion": rt.api_version,
            "metadata": meta,
            "items": [copy.deepcopy(o) for o in items],
        }

    def watch(
        self,
        rt: ResourceType,
        namespace: str | None,
        since: int | None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> Watch:
        """Subscribe to changes after ``since`` matching the selectors (410 if compacted)."""
        pred = self.selector_predicate(rt, label_selector, field_selector)
        return self.store.watch(rt.key, namespace or None, since, pred)

    # --- writes ---------------------------------------------------------------------------

    def create(self, rt: ResourceType, namespace: str, body: Any) -> Obj:
        """POST: create a new object (201 in HTTP)."""
        obj = check_identity(rt, namespace, copy.deepcopy(body), None)
        meta = obj["metadata"]
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = f"{meta['generateName']}{random_suffix(self._rng)}"
        if meta.get("resourceVersion"):
            raise errors.internal("resourceVersion should not be set on objects to be created")
        for system in ("deletionTimestamp", "deletionGracePeriodSeconds", "managedFields"):
            meta.pop(system, None)
        meta["uid"] = str(uuid.UUID(int=self._rng.getrandbits(128), version=4))
        meta["creationTimestamp"] = rfc3339(self._now())
        if rt.tracks_generation:
            meta["generation"] = 1
        else:
            meta.pop("generation", None)
        self._prepare_create(rt, obj)
        _omit_empty_meta(obj)
        if rt.defaulter:
            rt.defaulter(obj)
        errs = validate(rt, obj)
        if errs:
            raise errors.invalid(rt.group, rt.kind, str(meta.get("name") or ""), errs)
        if self.store.get(rt.key, namespace, meta["name"]) is not None:
            raise errors.already_exists(rt.group, rt.plural, meta["name"])
        return copy.deepcopy(self.store.put(rt.key, obj))

    def _prepare_create(self, rt: ResourceType, obj: Obj) -> None:
        if rt.kind == "Deployment":
            obj["status"] = {}
        elif rt.kind == "Pod":
            obj["status"] = {"phase": "Pending", "qosClass": "BestEffort"}
        elif rt.kind == "Service":
            obj["status"] = {"loadBalancer": {}}
            spec = obj.get("spec")
            if (
                isinstance(spec, dict)
                and spec.get("type") != "ExternalName"
                and not spec.get("clusterIP")
            ):
                spec["clusterIP"] = str(next(self._cluster_ips))
            if isinstance(spec, dict) and spec.get("clusterIP"):
                spec.setdefault("clusterIPs", [spec["clusterIP"]])

    def update(
        self, rt: ResourceType, namespace: str, name: str, body: Any, subresource: str | None = None
    ) -> tuple[Obj, bool]:
        """PUT: replace the object (or its status); returns (object, created)."""
        if subresource == "scale":
            return self.update_scale(rt, namespace, name, body), False
        current = self.store.get(rt.key, namespace, name)
        if current is None:
            if rt.create_on_update and subresource is None:
                obj = check_identity(rt, namespace, copy.deepcopy(body), name)
                obj["metadata"]["name"] = name
                obj["metadata"].pop("resourceVersion", None)
                return self.create(rt, namespace, obj), True
            raise errors.not_found(rt.group, rt.plural, name)
        return self._update(rt, namespace, name, copy.deepcopy(body), current, subresource), False

    def _update(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        body: Any,
        old: Obj,
        subresource: str | None,
    ) -> Obj:
        new = check_identity(rt, namespace, body, name)
        meta, old_meta = new["metadata"], old["metadata"]
        meta["name"] = name
        rv = meta.get("resourceVersion")
        if rv and rv != old_meta["resourceVersion"]:
            raise errors.conflict(rt.group, rt.plural, name)
        if meta.get("uid") and meta["uid"] != old_meta["uid"]:
            raise errors.uid_conflict(rt.plural, name, meta["uid"], old_meta["uid"])
        for system in (
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
        ):
            if system in old_meta:
                meta[system] = old_meta[system]
            else:
                meta.pop(system, None)
        meta["resourceVersion"] = old_meta["resourceVersion"]
        if subresource == "status":
            kept = copy.deepcopy(old)
            kept["status"] = new.get("status", {})
            if "metadata.labels" not in rt.status_keeps:
                kept["metadata"]["labels"] = meta.get("labels", {})
            kept["metadata"]["annotations"] = meta.get("annotations", old_meta.get("annotations"))
            if kept["metadata"]["annotations"] is None:
                kept["metadata"].pop("annotations")
            new = kept
        elif subresource is not None:
            raise errors.not_found(rt.group, f"{rt.plural}/{subresource}", name)
        else:
            if "status" in old:
                new["status"] = copy.deepcopy(old["status"])
            if rt.kind == "Service" and isinstance(new.get("spec"), dict):
                old_spec = old.get("spec") or {}
                for ip_field in ("clusterIP", "clusterIPs"):
                    if not new["spec"].get(ip_field) and old_spec.get(ip_field):
                        new["spec"][ip_field] = old_spec[ip_field]
        _omit_empty_meta(new)
        if rt.defaulter:
            rt.defaulter(new)
        errs = validate(rt, new, old)
        if errs:
            raise errors.invalid(rt.group, rt.kind, name, errs)
        if json_equal(_strip_rv(new), _strip_rv(old)):
            return copy.deepcopy(old)
        if subresource is None and rt.generation_changed(new, old):
            new["metadata"]["generation"] = int(old_meta.get("generation", 0)) + 1
        return copy.deepcopy(self.store.put(rt.key, new))

    def patch(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        content_type: str,
        raw: bytes,
        subresource: str | None = None,
    ) -> Obj:
        """PATCH with one of the three patch types; 415 for anything else."""
        content_type = content_type.split(";", 1)[0].strip()
        if content_type not in PATCH_TYPES:
            raise errors.unsupported_media_type(content_type, PATCH_TYPES)
        if content_type == APPLY_PATCH:
            raise errors.ApiError(
                415, "UnsupportedMediaType", "server-side apply is not supported by the sandbox", {}
            )
        try:
            patch_doc = json.loads(raw or b"null")
        except ValueError as e:
            raise errors.bad_request(f"error decoding patch: {e}") from e
        current = self.store.get(rt.key, namespace, name)
        if current is None:
            raise errors.not_found(rt.group, rt.plural, name)
        target = scale_of(current) if subresource == "scale" else copy.deepcopy(current)
        try:
            if content_type == MERGE_PATCH:
                if patch_doc is None or not isinstance(patch_doc, dict | list):
                    raise PatchFormatError("invalid JSON document")
                patched = merge_patch(target, patch_doc)
            elif content_type == JSON_PATCH:
                patched = json_patch(target, patch_doc)
            else:
                schema = {} if subresource == "scale" else rt.smp_schema
                patched = strategic_merge_patch(target, patch_doc, schema)
        except PatchFormatError as e:
            raise errors.bad_request(str(e)) from e
        except PatchApplyError as e:
            raise errors.unprocessable(str(e)) from e
        if not isinstance(patched, dict) or not isinstance(patched.get("metadata", {}), dict):
            raise errors.invalid(
                rt.group,
                rt.kind,
                name,
                [
                    errors.FieldError(
                        "patch",
                        "FieldValueInvalid",
                        "the patched document is not an object",
                        json.dumps(patched),
                    )
                ],
            )
        if subresource == "scale":
            return self.update_scale(rt, namespace, name, patched)
        return self._update(rt, namespace, name, patched, current, subresource)

    def delete(
        self, rt: ResourceType, namespace: str, name: str, options: Obj | None = None
    ) -> Obj:
        """DELETE: the deleted object (Pods, Services) or a Success Status; graceful for Pods."""
        options = options or {}
        current = self.store.get(rt.key, namespace, name)
        if current is None:
            raise errors.not_found(rt.group, rt.plural, name)
        pre = options.get("preconditions") or {}
        meta = current["metadata"]
        if pre.get("uid") and pre["uid"] != meta["uid"]:
            raise errors.uid_conflict(rt.plural, name, pre["uid"], meta["uid"])
        if pre.get("resourceVersion") and pre["resourceVersion"] != meta["resourceVersion"]:
            raise errors.conflict(rt.group, rt.plural, name)
        grace = grace_period(rt, current, options.get("gracePeriodSeconds"))
        if grace > 0:
            obj = copy.deepcopy(current)
            if "deletionTimestamp" not in meta or grace < int(
                meta.get("deletionGracePeriodSeconds", grace + 1)
            ):
                if "deletionTimestamp" not in meta and meta.get("generation", 0) > 0:
                    obj["metadata"]["generation"] = meta["generation"] + 1
                obj["metadata"]["deletionTimestamp"] = rfc3339(
                    self._now() + timedelta(seconds=grace)
                )
                obj["metadata"]["deletionGracePeriodSeconds"] = grace
                obj = copy.deepcopy(self.store.put(rt.key, obj))
            return obj if rt.returns_deleted_object else deleted_status(rt, obj)
        final = self.store.remove(rt.key, namespace, name)
        assert final is not None
        return copy.deepcopy(final) if rt.returns_deleted_object else deleted_status(rt, final)

    # --- scale subresource -------------------------------------------------------------------

    def get_scale(self, rt: ResourceType, namespace: str, name: str) -> Obj:
        """GET .../scale."""
        if rt is not DEPLOYMENTS:
            raise errors.not_found(rt.group, f"{rt.plural}/scale", name)
        return scale_of(self.get(rt, namespace, name))

    def update_scale(self, rt: ResourceType, namespace: str, name: str, scale: Any) -> Obj:
        """PUT .../scale: set ``spec.replicas`` (the Scale's resourceVersion is a precondition)."""
        if rt is not DEPLOYMENTS:
            raise errors.not_found(rt.group, f"{rt.plural}/scale", name)
        current = self.store.get(rt.key, namespace, name)
        if current is None:
            raise errors.not_found(rt.group, rt.plural, name)
        replicas, rv = parse_scale(scale, name)
        if rv and rv != current["metadata"]["resourceVersion"]:
            raise errors.conflict(rt.group, rt.plural, name)
        new = copy.deepcopy(current)
        new["spec"]["replicas"] = replicas
        return scale_of(self._update(rt, namespace, name, new, current, None))

    # --- in-process controllers (kubelet, scheduler) -------------------------------------

    def bind(self, rt: ResourceType, namespace: str, name: str, node: str) -> Obj:
        """Set a pod's ``spec.nodeName`` as the ``binding`` subresource would (no validation)."""
        current = self.store.get(rt.key, namespace, name)
        if current is None:
            raise errors.not_found(rt.group, rt.plural, name)
        new = copy.deepcopy(current)
        new["spec"]["nodeName"] = node
        return copy.deepcopy(self.store.put(rt.key, new))
