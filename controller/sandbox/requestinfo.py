"""Map an HTTP request to a resource request (like apiserver's ``RequestInfoFactory``).

Also: does a request's body name the object its URL names (:func:`check_identity`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from controller.sandbox import apierrors as errors
from controller.sandbox.kinds import ResourceType, lookup

Obj = dict[str, Any]


def not_found_path() -> errors.ApiError:
    """404 for a URL that names nothing the server serves."""
    return errors.ApiError(404, "NotFound", "the server could not find the requested resource", {})


@dataclass(frozen=True)
class RequestInfo:
    """What a resource URL + method address (like apiserver's ``RequestInfo``)."""

    verb: str
    rt: ResourceType
    namespace: str
    name: str | None
    subresource: str


def parse_resource_path(method: str, path: str, query: Any) -> RequestInfo:
    """Map an HTTP method and path to a served resource request, or raise 404/405."""
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["api"] and len(parts) >= 3:
        group, version, rest = "", parts[1], parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 4:
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        raise not_found_path()
    namespace = ""
    if rest[0] == "namespaces" and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    rt = lookup(group, version, rest[0])
    if rt is None or len(rest) > 3 or (not namespace and len(rest) > 1):
        raise not_found_path()
    name = rest[1] if len(rest) > 1 else None
    sub = rest[2] if len(rest) > 2 else ""
    if sub and sub not in rt.subresources:
        raise not_found_path()
    watching = str(query.get("watch", "")).lower() in ("1", "true")
    if name is None:
        verbs = {"GET": "watch" if watching else "list", "POST": "create"}
        if method == "POST" and not namespace:
            raise not_found_path()
    else:
        verbs = {"GET": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
        if sub:
            verbs.pop("DELETE")
    verb = verbs.get(method)
    if verb is None:
        raise errors.method_not_allowed()
    return RequestInfo(verb, rt, namespace, name, sub)


def int_param(query: Any, name: str) -> int | None:
    """An integer query parameter; 400 BadRequest when it is not one."""
    value = query.get(name)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError as e:
        raise errors.bad_request(f"invalid {name}: {value!r}") from e


def check_identity(rt: ResourceType, namespace: str, body: Any, url_name: str | None) -> Obj:
    """The body as the object the request names: 400 when its kind, namespace or name disagree."""
    if not isinstance(body, dict):
        raise errors.bad_request(f"the body of the request must be a {rt.kind} object")
    for field, want in (("apiVersion", rt.api_version), ("kind", rt.kind)):
        if body.get(field) not in (None, "", want):
            raise errors.bad_request(
                f"the {field} of the provided object ({body[field]}) does not match "
                f"the expected {field} ({want})"
            )
    meta = body.get("metadata")
    if meta is None:
        meta = body["metadata"] = {}
    if not isinstance(meta, dict):
        raise errors.bad_request("metadata must be an object")
    if meta.get("namespace") not in (None, "", namespace):
        raise errors.bad_request(
            "the namespace of the provided object does not match the namespace sent on the request"
        )
    if url_name is not None and meta.get("name") not in (None, "", url_name):
        raise errors.bad_request(
            f"the name of the object ({meta['name']}) does not match the name on the URL "
            f"({url_name})"
        )
    body["apiVersion"], body["kind"] = rt.api_version, rt.kind
    meta["namespace"] = namespace
    return body
