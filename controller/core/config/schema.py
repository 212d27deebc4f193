"""The config's JSON schema (generated from the model) and key lookups on it."""

from __future__ import annotations

import json
from datetime import timedelta
from functools import cache
from typing import Any

from pydantic import TypeAdapter

from controller.core.config.model import Config
from controller.core.durations import DURATION_PATTERN, format_duration

SCHEMA_ID = "https://ptc.invalid/schema/config.json"


@cache
def config_schema() -> dict[str, Any]:
    """JSON schema of a config file, keys as written in YAML."""
    schema = Config.model_json_schema(by_alias=True, mode="validation")
    _durations_as_written(schema)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = SCHEMA_ID
    schema["title"] = "ptc config"
    return schema


def _durations_as_written(node: Any) -> None:
    """Pydantic writes timedelta defaults as ISO 8601 (PT10S); show them as a config has them."""
    if isinstance(node, dict):
        default = node.get("default")
        if (
            isinstance(default, str)
            and default.startswith("P")
            and node.get("pattern") == (DURATION_PATTERN)
        ):
            node["default"] = format_duration(TypeAdapter(timedelta).validate_python(default))
        for value in node.values():
            _durations_as_written(value)
    elif isinstance(node, list):
        for value in node:
            _durations_as_written(value)


def schema_json() -> str:
    """The schema as the text committed in config/schema.json."""
    return json.dumps(config_schema(), indent=2, sort_keys=True) + "\n"


def _resolve(node: dict[str, Any], root: dict[str, Any]) -> list[dict[str, Any]]:
    """A schema node's concrete alternatives ($ref followed, anyOf/allOf flattened)."""
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        return _resolve(root["$defs"][name], root)
    out: list[dict[str, Any]] = []
    for key in ("anyOf", "allOf", "oneOf"):
        for option in node.get(key, []):
            out.extend(_resolve(option, root))
    return out or [node]


def allowed_keys(loc: tuple[str | int, ...]) -> list[str]:
    """The keys a mapping at `loc` may have (empty if `loc` is not a mapping in the schema)."""
    root = config_schema()
    nodes = [root]
    for part in loc:
        following: list[dict[str, Any]] = []
        for node in nodes:
            for option in _resolve(node, root):
                if isinstance(part, int) and "items" in option:
                    following.append(option["items"])
                elif isinstance(part, str) and part in option.get("properties", {}):
                    following.append(option["properties"][part])
        nodes = following
    keys: set[str] = set()
    for node in nodes:
        for option in _resolve(node, root):
            keys.update(option.get("properties", {}))
    return sorted(keys)
