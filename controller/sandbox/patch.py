"""The three PATCH flavours the API server accepts, as pure functions over JSON values.

- :func:`merge_patch` — RFC 7386 JSON merge patch (``application/merge-patch+json``).
- :func:`json_patch` — RFC 6902 JSON patch (``application/json-patch+json``), all six ops.
- :func:`strategic_merge_patch` — Kubernetes strategic merge patch
  (``application/strategic-merge-patch+json``) driven by a small schema of list merge keys.

Errors mirror the real server's split (``staging/.../endpoints/handlers/patch.go``): a patch
that cannot be decoded is :class:`PatchFormatError` (400 BadRequest); a well-formed patch that
cannot be applied (failed ``test``, missing path) is :class:`PatchApplyError` (422).

We hand-write RFC 6902 instead of using the ``jsonpatch`` package because the server must
reproduce evanphx/json-patch's distinctions (``true`` is not ``1``, ``replace`` of a missing key
fails) and report them with its status codes; the code is small and fully tested.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

JSON = Any


class PatchFormatError(ValueError):
    """The patch document itself is malformed (the server answers 400 BadRequest)."""


class PatchApplyError(ValueError):
    """The patch is well formed but does not apply to the object (the server answers 422)."""


def json_equal(a: JSON, b: JSON) -> bool:
    """JSON equality: unlike ``==`` in Python, ``true`` differs from ``1``."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


# --- RFC 7386 -----------------------------------------------------------------------------


def merge_patch(target: JSON, patch: JSON) -> JSON:
    """Apply an RFC 7386 merge patch; ``null`` deletes, objects merge, all else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# --- RFC 6902 -----------------------------------------------------------------------------


def _parse_pointer(pointer: Any) -> list[str]:
    if not isinstance(pointer, str):
        raise PatchApplyError(f"path must be a string, got {pointer!r}")
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise PatchApplyError(f"JSON pointer must start with '/': {pointer!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in pointer[1:].split("/")]


def _index(token: str, length: int, *, allow_end: bool, path: Any) -> int:
    if token == "-" and allow_end:
        return length
    if not token.isdigit() or (len(token) > 1 and token.startswith("0")):
        raise PatchApplyError(f"invalid array index {token!r} in {path}")
    idx = int(token)
    if idx > length or (idx == length and not allow_end):
        raise PatchApplyError(f"array index {idx} out of bounds in {path}")
    return idx


def _resolve_parent(doc: JSON, tokens: list[str], path: Any) -> JSON:
    node = doc
    for token in tokens[:-1]:
        if isinstance(node, dict):
            if token not in node:
                raise PatchApplyError(f"doc is missing path: {path}: missing value")
            node = node[token]
        elif isinstance(node, list):
            node = node[_index(token, len(node), allow_end=False, path=path)]
        else:
            raise PatchApplyError(f"doc is missing path: {path}: missing value")
    return node


def _get(doc: JSON, path: Any) -> JSON:
    tokens = _parse_pointer(path)
    if not tokens:
        return doc
    parent = _resolve_parent(doc, tokens, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchApplyError(f"unable to get nonexistent key: {last}: missing value")
        return parent[last]
    if isinstance(parent, list):
        return parent[_index(last, len(parent), allow_end=False, path=path)]
    raise PatchApplyError(f"doc is missing path: {path}: missing value")


def _add(doc: JSON, path: Any, value: JSON) -> JSON:
    tokens = _parse_pointer(path)
    if not tokens:
        return value
    parent = _resolve_parent(doc, tokens, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(last, len(parent), allow_end=True, path=path), value)
    else:
        raise PatchApplyError(f"add operation does not apply: doc is missing path: {path}")
    return doc


def _remove(doc: JSON, path: Any, op: str = "remove") -> tuple[JSON, JSON]:
    tokens = _parse_pointer(path)
    if not tokens:
        raise PatchApplyError(f"{op} operation does not apply to the document root")
    parent = _resolve_parent(doc, tokens, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchApplyError(f"unable to {op} nonexistent key: {last}: missing value")
        return doc, parent.pop(last)
    if isinstance(parent, list):
        return doc, parent.pop(_index(last, len(parent), allow_end=False, path=path))
    raise PatchApplyError(f"{op} operation does not apply: doc is missing path: {path}")


def decode_json_patch(ops: JSON) -> list[dict[str, Any]]:
    """Check the outer shape of a JSON patch (array of objects), as DecodePatch does."""
    if not isinstance(ops, list) or not all(isinstance(op, dict) for op in ops):
        raise PatchFormatError(
            "json: cannot unmarshal object into Go value of type jsonpatch.Patch"
        )
    return ops


def json_patch(doc: JSON, ops: JSON) -> JSON:
    """Apply an RFC 6902 patch to a copy of ``doc``; atomic: any failing op fails it all."""
    result = copy.deepcopy(doc)
    for op in decode_json_patch(ops):
        kind = op.get("op")
        path = op.get("path")
        if kind in ("add", "replace", "test") and "value" not in op:
            raise PatchApplyError(f"{kind} operation missing value")
        if kind == "add":
            result = _add(result, path, copy.deepcopy(op["value"]))
        elif kind == "remove":
            result, _ = _remove(result, path)
        elif kind == "replace":
            if _parse_pointer(path):
                result, _ = _remove(result, path, "replace")
            result = _add(result, path, copy.deepcopy(op["value"]))
        elif kind == "move":
            source = op.get("from")
            if isinstance(source, str) and isinstance(path, str) and path.startswith(source + "/"):
                raise PatchApplyError(
                    f"move operation cannot move {source} into its own child {path}"
                )
            result, value = _remove(result, source, "move")
            result = _add(result, path, value)
        elif kind == "copy":
            result = _add(result, path, copy.deepcopy(_get(result, op.get("from"))))
        elif kind == "test":
            try:
                actual = _get(result, path)
            except PatchApplyError:
                actual = None
                if op["value"] is not None:
                    raise PatchApplyError(f"testing value {path} failed: test failed") from None
            if not json_equal(actual, op["value"]):
                raise PatchApplyError(f"testing value {path} failed: test failed")
        else:
            raise PatchApplyError(f"Unexpected kind: {kind}")
    return result


# --- strategic merge patch ------------------------------------------------------------------

ELEMENT = "[]"
"""Path segment standing for 'any element of this list' in an SMP schema."""

SmpSchema = Mapping[tuple[str, ...], str]
"""Maps a field path (list elements written as ``[]``) to its list merge key.

The special merge key ``"$primitive"`` marks a list of scalars merged as a set (``finalizers``).
Lists not in the schema are replaced wholesale, exactly like fields without a
``patchStrategy:"merge"`` tag in the Go types.
"""

PRIMITIVE = "$primitive"


def strategic_merge_patch(original: JSON, patch: JSON, schema: SmpSchema) -> JSON:
    """Apply a strategic merge patch to ``original`` using ``schema`` for list merge keys."""
    if not isinstance(patch, dict):
        raise PatchFormatError("strategic merge patch must be a JSON object")
    if not isinstance(original, dict):
        original = {}
    return _smp_map(original, patch, schema, ())


def _smp_map(
    original: dict[str, Any], patch: dict[str, Any], schema: SmpSchema, path: tuple[str, ...]
) -> JSON:
    directive = patch.get("$patch")
    if directive == "delete":
        return None
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if directive not in (None, "merge"):
        raise PatchFormatError(f"Unknown patch type: {directive!r} in map: {patch}")
    result = dict(original)
    orders: dict[str, list[Any]] = {}
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys"):
            continue
        if key.startswith("$setElementOrder/"):
            if not isinstance(value, list):
                raise PatchFormatError(f"invalid $setElementOrder list for {key}")
            orders[key.split("/", 1)[1]] = value
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            if not isinstance(value, list):
                raise PatchFormatError(f"invalid $deleteFromPrimitiveList for {field}")
            current = result.get(field)
            if isinstance(current, list):
                result[field] = [x for x in current if not any(json_equal(x, v) for v in value)]
            continue
        if value is None:
            result.pop(key, None)
            continue
        child_path = (*path, key)
        current = result.get(key)
        if isinstance(value, dict):
            merged = _smp_map(
                current if isinstance(current, dict) else {}, value, schema, child_path
            )
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        elif isinstance(value, list) and child_path in schema:
            result[key] = _smp_list(
                current if isinstance(current, list) else [], value, schema, child_path
            )
        else:
            result[key] = copy.deepcopy(value)
    for field, order in orders.items():
        if isinstance(result.get(field), list):
            result[field] = _apply_order(result[field], order, schema.get((*path, field)))
    return result


def _smp_list(
    original: list[Any], patch: list[Any], schema: SmpSchema, path: tuple[str, ...]
) -> list[Any]:
    merge_key = schema[path]
    if any(isinstance(item, dict) and item.get("$patch") == "replace" for item in patch):
        return [copy.deepcopy(i) for i in patch if not (isinstance(i, dict) and "$patch" in i)]
    if merge_key == PRIMITIVE:
        result = list(original)
        for item in patch:
            if not any(json_equal(item, x) for x in result):
                result.append(copy.deepcopy(item))
        return result
    result = [copy.deepcopy(x) for x in original]
    for item in patch:
        if not isinstance(item, dict) or merge_key not in item:
            raise PatchFormatError(f"map: {item} does not contain declared merge key: {merge_key}")
        found = next(
            (
                i
                for i, x in enumerate(result)
                if isinstance(x, dict) and json_equal(x.get(merge_key), item[merge_key])
            ),
            None,
        )
        if item.get("$patch") == "delete":
            if found is not None:
                result.pop(found)
            continue
        if found is None:
            merged = _smp_map({}, item, schema, (*path, ELEMENT))
            if merged is not None:
                result.append(merged)
        else:
            merged = _smp_map(result[found], item, schema, (*path, ELEMENT))
            if merged is None:
                result.pop(found)
            else:
                result[found] = merged
    return result


def _apply_order(items: list[Any], order: list[Any], merge_key: str | None) -> list[Any]:
    def key_of(x: Any) -> Any:
        if merge_key and merge_key != PRIMITIVE and isinstance(x, dict):
            return x.get(merge_key)
        return x

    wanted = [key_of(o) for o in order]
    ordered = [x for w in wanted for x in items if json_equal(key_of(x), w)]
    rest = [x for x in items if not any(json_equal(key_of(x), w) for w in wanted)]
    return ordered + rest
