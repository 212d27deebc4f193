"""Secondary indexes over an informer's cache (like client-go's ``Indexers``).

An index is a named function from an object to the keys it is filed under (a pod's Deployment,
its ``label=value`` pairs; an EndpointSlice's Service). Lookups cost the size of the answer,
not of the cache: one rollout's reconcile reads its own objects only, however many other
rollouts share the namespace.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Generic, TypeVar

T = TypeVar("T")
IndexKeys = Callable[[T], Iterable[str]]


class Indexes(Generic[T]):
    """Names of cached objects by index and key; kept in step by the informer's every change."""

    def __init__(self) -> None:
        self._keys: dict[str, IndexKeys[T]] = {}
        self._buckets: dict[str, dict[str, set[str]]] = {}  # index -> key -> object names

    def add(self, index: str, keys: IndexKeys[T], items: Mapping[str, T]) -> None:
        """Declare (or replace) an index and file the current ``items`` in it."""
        self._keys[index] = keys
        self._buckets[index] = {}
        for name, obj in items.items():
            self._file(index, name, obj)

    def rebuild(self, items: Mapping[str, T]) -> None:
        """Refile everything (after a list replaced the cache)."""
        for index in self._keys:
            self._buckets[index] = {}
            for name, obj in items.items():
                self._file(index, name, obj)

    def put(self, name: str, old: T | None, new: T | None) -> None:
        """The object of this name changed from ``old`` to ``new`` (None: absent)."""
        for index, keys in self._keys.items():
            buckets = self._buckets[index]
            if old is not None:
                for key in keys(old):
                    bucket = buckets.get(key)
                    if bucket is not None:
                        bucket.discard(name)
                        if not bucket:
                            del buckets[key]  # keys come and go with pods: no empty buckets
            if new is not None:
                self._file(index, name, new)

    def names(self, index: str, key: str) -> set[str]:
        """The names filed under ``key`` (KeyError for an undeclared index: a programming error)."""
        return self._buckets[index].get(key, set())

    def _file(self, index: str, name: str, obj: T) -> None:
        buckets = self._buckets[index]
        for key in self._keys[index](obj):
            buckets.setdefault(key, set()).add(name)
