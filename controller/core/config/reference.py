"""The config reference (Markdown) generated from the JSON schema, so docs and code agree."""

from __future__ import annotations

from typing import Any

from controller.core.config.schema import config_schema
from controller.core.durations import DURATION_PATTERN


def _resolve(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in node:
        return _resolve(root["$defs"][node["$ref"].rsplit("/", 1)[-1]], root)
    for key in ("anyOf", "oneOf"):
        options = [o for o in node.get(key, []) if o.get("type") != "null"]
        if len(options) == 1:
            merged = {k: v for k, v in node.items() if k != key}
            return {**_resolve(options[0], root), **merged}
    return node


def _type(node: dict[str, Any], root: dict[str, Any]) -> str:
    node = _resolve(node, root)
    if "enum" in node:
        return " \\| ".join(f"`{v}`" for v in node["enum"])
    if "anyOf" in node:
        return " or ".join(_type(o, root) for o in node["anyOf"] if o.get("type") != "null")
    kind = node.get("type", "object")
    if kind == "array":
        return f"list of {_type(node.get('items', {}), root)}"
    if kind == "object" and "properties" not in node:
        return "map"
    if kind == "string" and node.get("pattern") == DURATION_PATTERN:
        return "duration"
    return str(kind)


def _default(node: dict[str, Any]) -> str:
    if "default" not in node:
        return ""
    value = node["default"]
    if value is None or value in ({}, []) or isinstance(value, dict):
        return ""
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{value}`"


def _rows(node: dict[str, Any], root: dict[str, Any], path: str, out: list[str]) -> None:
    node = _resolve(node, root)
    if node.get("type") == "array" and "items" in node:
        _rows(node["items"], root, path + "[]", out)
        return
    required = set(node.get("required", []))
    for key, child in node.get("properties", {}).items():
        full = f"{path}.{key}" if path else key
        resolved = _resolve(child, root)
        description = (child.get("description") or resolved.get("description") or "").strip()
        description = " ".join(description.split()).replace("|", "\\|")
        if full == "defaults":
            description += " Keys: any rollout key but name, service, stable and canary."
        req = "yes" if key in required else ""
        out.append(
            f"| `{full}` | {_type(child, root)} | {req} | {_default(child)} | {description} |"
        )
        if full == "defaults":
            continue  # the same keys as a rollout (below); listing them twice helps nobody
        if "properties" in resolved or (
            resolved.get("type") == "array"
            and "properties" in _resolve(resolved.get("items", {}), root)
        ):
            _rows(resolved, root, full, out)


def markdown_reference() -> str:
    """Every config key: type, whether required, default and description."""
    root = config_schema()
    lines = [
        "# ptc config reference",
        "",
        "Generated from the config model by `ptc schema --markdown` (CI checks it is current).",
        "Durations are strings such as `30s`, `5m`, `1h30m`; `[]` marks a list item.",
        "",
        "| key | type | required | default | meaning |",
        "|---|---|---|---|---|",
    ]
    _rows(root, root, "", lines)
    return "\n".join(lines) + "\n"
