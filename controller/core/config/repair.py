"""Repairing a badly typed rollout just enough to judge the rest of it.

So that one run reports every problem: each badly typed value is removed (its default applies),
a missing required value or a broken list item is replaced by a neutral placeholder, and the
rollout is validated again. Every location repaired is returned: problems the semantic checks
find at, under or (deeper than the rollout) above one of them may be caused by the repair and
are not reported.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from controller.core.config.model import Rollout

Loc = tuple[str | int, ...]
_ROUNDS = 6
_counter = itertools.count()


@dataclass(frozen=True)
class Repaired:
    """A rollout that validates after repairs, and where the repairs were (relative to it)."""

    rollout: Rollout
    repaired: list[Loc]


def _unique(prefix: str = "ptc-placeholder") -> str:
    return f"{prefix}-{next(_counter)}"


def _placeholder_field(key: str, parent: dict[str, Any], container: Any) -> Any:
    """A neutral value for a required key that is missing (or was removed), or None."""
    if key in ("name", "service", "deployment", "version"):
        return _unique()
    if key == "stable":
        return {"deployment": _unique()}
    if key == "canary":
        return {"deployment": _unique(), "version": _unique()}
    if key == "steps":
        return [{"weight": 100}]
    if key == "weight":
        # The largest weight before it: judged against its neighbours, it adds no problem.
        before = []
        if isinstance(container, list):
            for step in container:
                if step is parent:
                    break
                if isinstance(step, dict) and type(step.get("weight")) in (int, float):
                    before.append(float(step["weight"]))
        return max(before, default=1e-9)
    if key == "metric":
        return "ptc_placeholder"
    if key == "numerator":
        return {"ptc_placeholder": "1"}
    if key == "quantile":
        return 0.5
    if key in ("capacity", "demand"):
        return {"query": "vector(1)"}
    return None


def _placeholder_item(list_key: str, items: list[Any], index: int) -> Any:
    """A neutral list item in place of a broken one, or None."""
    if list_key == "steps":
        before = [
            float(s["weight"])
            for s in items[:index]
            if isinstance(s, dict) and type(s.get("weight")) in (int, float)
        ]
        return {"weight": max(before, default=1e-9)}
    if list_key == "metrics":
        return {"name": _unique(), "query": "vector(0)", "max": 1}
    if list_key == "expectMetrics":
        return "ptc_placeholder"
    return None


def _parent(data: Any, loc: Loc) -> tuple[Any, Any, Any] | None:
    """(grandparent, parent, key) of the value at `loc` in `data`; None if the path is gone."""
    grand, node = None, data
    for part in loc[:-1]:
        try:
            grand, node = node, node[part]
        except (KeyError, IndexError, TypeError):
            return None
    return grand, node, loc[-1]


def _repair_one(data: Any, loc: Loc, kind: str) -> Loc | None:
    """Repair one error in place; the location repaired, or None when it cannot be."""
    found = _parent(data, loc) if loc else None
    if found is None:
        return None
    grand, parent, key = found
    if isinstance(parent, dict) and isinstance(key, str):
        if kind != "missing" and key in parent:
            del parent[key]
            return loc
        value = _placeholder_field(key, parent, grand)
        if value is not None:
            parent[key] = value
            return loc
    if isinstance(parent, list) and isinstance(key, int) and 0 <= key < len(parent):
        list_key = loc[-2] if len(loc) >= 2 else ""
        item = _placeholder_item(str(list_key), parent, key)
        if item is not None:
            parent[key] = item
            return loc
    # A broken item inside a list item (a step's required weight, ...): replace the item.
    for cut in range(len(loc) - 1, 0, -1):
        if isinstance(loc[cut], int):
            return _repair_one(data, loc[: cut + 1], "item") if cut + 1 < len(loc) else None
    return None


def repair_rollout(raw: Any, errors: Iterable[tuple[Loc, str]]) -> Repaired | None:
    """The rollout validated after repairing `errors` (locs relative to it); None if it can't."""
    if not isinstance(raw, dict):
        return None
    data = copy.deepcopy(raw)
    repaired: list[Loc] = []
    pending = list(errors)
    for _ in range(_ROUNDS):
        for loc, kind in pending:
            done = _repair_one(data, loc, kind)
            if done is None:
                return None
            repaired.append(done)
        try:
            rollout = Rollout.model_validate(data, by_alias=True, by_name=False)
        except ValidationError as exc:
            pending = [(clean_loc(e["loc"]), e["type"]) for e in exc.errors()]
            continue
        return Repaired(rollout, repaired)
    return None


def clean_loc(loc: Iterable[Any]) -> Loc:
    """A pydantic error location as key path: validator and union-member parts dropped."""
    return tuple(p for p in loc if not (isinstance(p, str) and "[" in p))


def caused_by_repair(loc: Loc, repaired: Iterable[Loc]) -> bool:
    """Whether a finding at `loc` (relative to the rollout) may come from a repair."""
    for r in repaired:
        if loc[: len(r)] == r:
            return True
        if loc and r[: len(loc)] == loc:
            return True
    return False
