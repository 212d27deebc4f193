"""Discovery: ``/version``, ``/api``, ``/apis``, ``/api/v1``, ``/apis/<group>[/<version>]``.

Shapes follow the real server's legacy (unaggregated) discovery, which is what kr8s reads.
"""

from __future__ import annotations

from typing import Any

from controller.sandbox import apierrors as errors
from controller.sandbox.kinds import group_versions
from controller.sandbox.requestinfo import not_found_path

KUBERNETES_VERSION = "v1.34.1"
"""Reported version: inside kr8s 0.20's supported range and recent enough that Pods carry
``metadata.generation`` (populated by the API server since v1.33)."""


def version_info(git_version: str = KUBERNETES_VERSION) -> dict[str, Any]:
    """``/version``."""
    major, minor = git_version.lstrip("v").split(".")[:2]
    return {
        "major": major,
        "minor": minor,
        "gitVersion": git_version,
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-09-09T00:00:00Z",
        "goVersion": "go1.24.6",
        "compiler": "gc",
        "platform": "linux/amd64",
    }


def core_versions(server_address: str) -> dict[str, Any]:
    """``/api``."""
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
        ],
    }


def _group(name: str, versions: list[str]) -> dict[str, Any]:
    entries = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": entries, "preferredVersion": entries[0]}


def _groups() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for gv in group_versions():
        if "/" in gv:
            group, version = gv.split("/")
            out.setdefault(group, []).append(version)
    return out


def group_list() -> dict[str, Any]:
    """``/apis``."""
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [_group(name, versions) for name, versions in sorted(_groups().items())],
    }


def api_group(name: str) -> dict[str, Any] | None:
    """``/apis/<group>`` or None when the group is not served."""
    versions = _groups().get(name)
    if versions is None:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group(name, versions)}


def resource_list(group_version: str) -> dict[str, Any] | None:
    """``/api/v1`` or ``/apis/<group>/<version>`` or None when not served."""
    types = group_versions().get(group_version)
    if types is None:
        return None
    resources = [entry for rt in types for entry in rt.discovery()]
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }


def document(path: str, server_address: str, version: str) -> dict[str, Any] | None:
    """The discovery document served at `path`; None when `path` is not a discovery path."""
    if path == "/version":
        return version_info(version)
    if path == "/api":
        return core_versions(server_address)
    if path == "/apis":
        return group_list()
    parts = path.strip("/").split("/")
    if parts[0] == "api" and len(parts) == 2:
        return resource_list(parts[1]) or _raise(not_found_path())
    if parts[0] == "apis" and len(parts) == 2:
        return api_group(parts[1]) or _raise(not_found_path())
    if parts[0] == "apis" and len(parts) == 3:
        return resource_list(f"{parts[1]}/{parts[2]}") or _raise(not_found_path())
    return None


def _raise(error: errors.ApiError) -> dict[str, Any]:
    raise error
