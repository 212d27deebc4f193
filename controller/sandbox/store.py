"""In-memory object store: one global resourceVersion counter, a bounded event history, watches.

This is the sandbox's etcd. It knows nothing about kinds or validation (that is
:mod:`controller.sandbox.registry`); it stores JSON objects under
``(group, plural) -> (namespace, name)``, stamps each write with the next resourceVersion,
records the write as a watch event and fans it out to subscribers.

Watch semantics follow the real server's watch cache:

- a watch from resourceVersion ``N`` replays every retained event with a version above ``N``,
  then follows live; if events after ``N`` were already compacted away it fails with 410 Gone
  (``too old resource version: N (oldest)``);
- with a selector, an object that stops matching is sent as ``DELETED`` and one that starts
  matching as ``ADDED`` (so a client's cache stays equal to a fresh filtered list).

History is bounded (``history_limit`` events); :meth:`Store.compact` drops it all so tests can
force a 410 deterministically.

Indexes (:meth:`Store.add_index`, like client-go's Indexer) let the simulated controllers find
"the pods with label app=x" or "the slices of Service s" without scanning a resource: with
thousands of Services in one namespace a scan per event made the sandbox, not the controller
under test, the bottleneck of the scale bench.
"""

from __future__ import annotations

import asyncio
import copy
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any

from controller.sandbox.apierrors import gone

Obj = dict[str, Any]
ResourceKey = tuple[str, str]
Predicate = Callable[[Obj], bool]
IndexFn = Callable[[Obj], Iterable[Hashable]]
Ident = tuple[str, str]


@dataclass(frozen=True)
class StoreEvent:
    """One committed write, as the watch history keeps it."""

    rv: int
    type: str  # ADDED | MODIFIED | DELETED
    key: ResourceKey
    namespace: str
    name: str
    obj: Obj
    prev: Obj | None


class Watch:
    """A subscription to store events, filtered by resource, namespace and a predicate."""

    def __init__(
        self,
        store: Store,
        key: ResourceKey | None,
        namespace: str | None,
        predicate: Predicate | None,
        cuttable: bool = True,
    ) -> None:
        self._store = store
        self.cuttable = cuttable
        self.key = key
        self.namespace = namespace
        self.predicate = predicate
        self._queue: asyncio.Queue[tuple[str, Obj] | None] = asyncio.Queue()
        self.closed = False
        # resourceVersions of the last event queued here and of the last one its consumer
        # reported sent (HTTP streams do, for the echo ordering: controller.sandbox.echo)
        self.offered = 0
        self.sent = 0

    def _offer(self, ev: StoreEvent) -> None:
        if self.closed:
            return
        if self.key is not None and ev.key != self.key:
            return
        if self.namespace and ev.namespace != self.namespace:
            return
        event_type = self._seen_as(ev)
        if event_type is not None:
            self._queue.put_nowait((event_type, ev.obj))
            self.offered = ev.rv

    def _seen_as(self, ev: StoreEvent) -> str | None:
        """The event type this watch gets for ``ev`` (None: none, it is filtered out)."""
        if self.predicate is None:
            return ev.type
        now = self.predicate(ev.obj)
        before = ev.prev is not None and self.predicate(ev.prev)
        if ev.type == "ADDED":
            return "ADDED" if now else None
        if ev.type == "DELETED":
            return "DELETED" if now or before else None
        if now and before:
            return "MODIFIED"
        if now:
            return "ADDED"
        return "DELETED" if before else None

    async def next(self, within: float | None = None) -> tuple[str, Obj] | None:
        """Next (type, object); None once closed or when ``within`` seconds pass first."""
        if self.closed and self._queue.empty():
            return None
        try:
            return await asyncio.wait_for(self._queue.get(), within)
        except TimeoutError:
            return None

    def drain(self) -> list[tuple[str, Obj]]:
        """Every event already queued, without waiting (stops at the close marker)."""
        out: list[tuple[str, Obj]] = []
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if item is None:
                self._queue.put_nowait(None)
                break
            out.append(item)
        return out

    def close(self) -> None:
        """Stop the subscription; a pending :meth:`next` returns None."""
        if not self.closed:
            self.closed = True
            self._store._watches.discard(self)
            self._queue.put_nowait(None)


class Store:
    """Objects by resource and (namespace, name), with resourceVersions and watch history."""

    def __init__(self, history_limit: int = 10_000) -> None:
        self._objects: dict[ResourceKey, dict[tuple[str, str], Obj]] = {}
        self._rv = 0
        self._history: deque[StoreEvent] = deque()
        self._floor = 0  # events with rv > floor are retained
        self.history_limit = history_limit
        self._watches: set[Watch] = set()
        # key -> index name -> (values of an object, value -> (namespace, name)s)
        self._indexes: dict[ResourceKey, dict[str, tuple[IndexFn, dict[Hashable, set[Ident]]]]] = {}

    def add_index(self, key: ResourceKey, name: str, fn: IndexFn) -> None:
        """Keep objects of ``key`` findable by each value ``fn`` returns (idempotent per name)."""
        per_key = self._indexes.setdefault(key, {})
        if name in per_key:
            return
        table: dict[Hashable, set[Ident]] = {}
        per_key[name] = (fn, table)
        for ident, obj in self._objects.get(key, {}).items():
            for value in fn(obj):
                table.setdefault(value, set()).add(ident)

    def by_index(self, key: ResourceKey, name: str, value: Hashable) -> list[Obj]:
        """Objects of ``key`` whose index ``name`` holds ``value``, sorted; read-only."""
        idents = self._indexes[key][name][1].get(value, ())
        items = self._objects.get(key, {})
        return [items[i] for i in sorted(idents)]

    def _reindex(self, key: ResourceKey, ident: Ident, old: Obj | None, new: Obj | None) -> None:
        for fn, table in self._indexes.get(key, {}).values():
            if old is not None:
                for value in fn(old):
                    idents = table.get(value)
                    if idents is not None:
                        idents.discard(ident)
                        if not idents:
                            del table[value]
            if new is not None:
                for value in fn(new):
                    table.setdefault(value, set()).add(ident)

    @property
    def resource_version(self) -> int:
        """The latest committed resourceVersion."""
        return self._rv

    @property
    def oldest_watchable(self) -> int:
        """The smallest resourceVersion a watch may still start from."""
        return self._floor

    def get(self, key: ResourceKey, namespace: str, name: str) -> Obj | None:
        """The stored object (treat as read-only) or None."""
        return self._objects.get(key, {}).get((namespace, name))

    def list(self, key: ResourceKey, namespace: str | None = None) -> list[Obj]:
        """Stored objects of a resource, sorted by (namespace, name); read-only."""
        items = self._objects.get(key, {})
        return [items[k] for k in sorted(items) if not namespace or k[0] == namespace]

    def put(self, key: ResourceKey, obj: Obj) -> Obj:
        """Store ``obj`` (ADDED/MODIFIED) under the next resourceVersion; return the copy kept."""
        meta = obj["metadata"]
        ident = (meta.get("namespace", ""), meta["name"])
        prev = self._objects.get(key, {}).get(ident)
        stored = copy.deepcopy(obj)
        self._rv += 1
        stored["metadata"]["resourceVersion"] = str(self._rv)
        self._objects.setdefault(key, {})[ident] = stored
        self._reindex(key, ident, prev, stored)
        self._publish(
            StoreEvent(
                self._rv, "MODIFIED" if prev else "ADDED", key, ident[0], ident[1], stored, prev
            )
        )
        return stored

    def remove(self, key: ResourceKey, namespace: str, name: str) -> Obj | None:
        """Delete an object; the DELETED event carries it stamped with a new resourceVersion."""
        prev = self._objects.get(key, {}).pop((namespace, name), None)
        if prev is None:
            return None
        self._reindex(key, (namespace, name), prev, None)
        final = copy.deepcopy(prev)
        self._rv += 1
        final["metadata"]["resourceVersion"] = str(self._rv)
        self._publish(StoreEvent(self._rv, "DELETED", key, namespace, name, final, prev))
        return final

    def _publish(self, ev: StoreEvent) -> None:
        self._history.append(ev)
        while len(self._history) > self.history_limit:
            self._floor = self._history.popleft().rv
        for w in list(self._watches):
            w._offer(ev)

    def compact(self) -> None:
        """Forget all history, as etcd compaction does: older watches now get 410 Gone."""
        self._history.clear()
        self._floor = self._rv

    def watch(
        self,
        key: ResourceKey | None,
        namespace: str | None = None,
        since: int | None = None,
        predicate: Predicate | None = None,
        cuttable: bool = True,
    ) -> Watch:
        """Subscribe to events after ``since`` (None: from now); 410 Gone if compacted away.

        ``cuttable=False`` marks in-process subscribers (the workload simulator) that fault
        injection must not disconnect.
        """
        if since is not None and since < self._floor:
            raise gone(f"too old resource version: {since} ({self._floor + 1})")
        w = Watch(self, key, namespace, predicate, cuttable)
        if since is not None:
            for ev in self._history:
                if ev.rv > since:
                    w._offer(ev)
        self._watches.add(w)
        return w

    def close_watches(self, include_internal: bool = False) -> int:
        """Close open watches (server stop, or a fault cutting streams); return how many."""
        watches = [w for w in self._watches if w.cuttable or include_internal]
        for w in watches:
            w.close()
        return len(watches)
