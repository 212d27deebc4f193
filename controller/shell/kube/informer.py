"""A list + watch cache of one kind in one namespace, feeding subscribers with every change.

The loop (one named task per informer):

1. **list** (paged) and replace the cache; subscribers get the differences (ADDED / MODIFIED /
   DELETED) between the old and the new cache, so nothing missed while disconnected is lost;
2. **watch** from the list's resourceVersion with ``timeoutSeconds``, so the server ends each
   stream regularly; a cleanly rotated stream is re-opened at once from the last version seen;
3. on **410 Gone** (an ERROR event or status) forget the version and go back to 1 (a *relist*);
   on any other failure, or a stream ended early, **reconnect** after a tenacity exponential
   backoff with jitter and a cap. A stream that was healthy (up ``healthy_after`` s or delivered
   events) resets the backoff, so an informer never spins and never waits long after a blip.

Each informer opens its own :class:`~controller.shell.kube.transport.Transport` (see there why).

Callbacks run synchronously in the informer task, after the cache was updated; they must not
block (put the event on a queue). A callback that raises is logged and does not stop the loop.

For a writer that must not trust its own write's response longer than needed (see
:mod:`controller.shell.kube.expectations`), the informer remembers which object versions it has
delivered (:meth:`Informer.delivered`: the cached one, and a short memory of recent ones, since a
write's watch echo may arrive before its response) and which lists replaced the cache
(:meth:`Informer.list_mark` / :meth:`Informer.relisted_since`).

Readers of a few objects use indexes (:meth:`Informer.add_index`, :meth:`Informer.by_index`;
see :mod:`controller.shell.kube.indexes`), not :meth:`Informer.items`. :attr:`Informer.objects_read`
counts every object handed to a reader, so tests assert that work rather than time it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import structlog
import tenacity

from controller.shell.kube.errors import Gone, KubeError, Unavailable, error_for_status
from controller.shell.kube.indexes import Indexes, IndexKeys
from controller.shell.kube.policy import KubePolicy
from controller.shell.kube.resources import Resource
from controller.shell.kube.transport import Obj, Transport

T = TypeVar("T")
Callback = Callable[[str, T], None]

ADDED, MODIFIED, DELETED = "ADDED", "MODIFIED", "DELETED"
_LIST_PAGE = 500
# (name, resourceVersion) pairs delivered lately, beyond each cached object's own version: a
# write's echo can overtake its response by milliseconds, not by hundreds of events of one kind.
_RECENT_VERSIONS = 256

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class InformerStats:
    """Counters for metrics: lists made (the first included), relists, reconnects, events."""

    lists: int = 0
    relists: int = 0
    reconnects: int = 0
    events: int = 0


class _EndedEarly(Unavailable):
    """The server closed the watch before its timeoutSeconds (cut, restarted, proxy timeout)."""


class Informer(Generic[T]):
    """List + watch cache for one kind in one namespace; see the module docstring."""

    def __init__(
        self,
        kind: str,
        resource: Resource,
        namespace: str,
        parse: Callable[[Obj], T],
        open_transport: Callable[[], Awaitable[Transport]],
        policy: KubePolicy,
    ) -> None:
        self.kind = kind
        self.namespace = namespace
        self._resource = resource
        self._parse = parse
        self._open_transport = open_transport
        self._policy = policy
        self._items: dict[str, T] = {}
        self._version: str | None = None
        self._versions: dict[str, str] = {}  # name -> resourceVersion of the cached object
        self._recent: deque[tuple[str, str]] = deque(maxlen=_RECENT_VERSIONS)
        self._lists_started = 0
        self._listed_from = 0  # which list (by start order) last replaced the cache
        self._synced = asyncio.Event()
        # replaced on every sync/error change, so each waiter holding the old one wakes up
        self._changed = asyncio.Event()
        self._subscribers: list[Callback[T]] = []
        self._task: asyncio.Task[None] | None = None
        self._stats = InformerStats()
        self._indexes: Indexes[T] = Indexes()
        self.objects_read = 0  # objects handed to readers (get, by_index, items)
        self.last_error: BaseException | None = None
        self._log = log.bind(kind=kind, namespace=namespace)

    # --- public ----------------------------------------------------------------------------

    @property
    def synced(self) -> bool:
        """Whether the cache holds a complete list (it may still be behind a broken watch)."""
        return self._synced.is_set()

    @property
    def running(self) -> bool:
        """Whether the informer's task is running."""
        return self._task is not None and not self._task.done()

    @property
    def stats(self) -> InformerStats:
        """A snapshot of the counters."""
        return self._stats

    async def start(self) -> None:
        """Start listing and watching in the background (no-op when already running)."""
        if self.running:
            return
        self._task = asyncio.create_task(
            self._run(), name=f"ptc-informer:{self.kind}/{self.namespace}"
        )

    async def stop(self) -> None:
        """Stop the task and close its connection; the cache is kept but no longer synced."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise  # we are being cancelled ourselves: let it through
        self._synced.clear()
        self._version = None

    async def wait_synced(self, timeout: float) -> None:
        """Return once the first list is in the cache.

        Raises the list's error at once when it is one retrying cannot fix by itself
        (Forbidden, NotFound, Invalid); Unavailable after ``timeout`` s otherwise.
        """
        if not self.running and not self.synced:
            raise RuntimeError(f"{self.kind} informer for {self.namespace!r} is not started")
        try:
            async with asyncio.timeout(timeout):
                while not self.synced:
                    self._raise_if_permanent()
                    await self._changed.wait()
        except TimeoutError as e:
            cause = self.last_error
            raise Unavailable(
                f"{self.kind} informer for {self.namespace!r} not synced within {timeout}s"
                + (f": {cause}" if cause else "")
            ) from (cause or e)

    def get(self, name: str) -> T | None:
        """The cached object, or None."""
        obj = self._items.get(name)
        if obj is not None:
            self.objects_read += 1
        return obj

    def add_index(self, index: str, keys: IndexKeys[T]) -> None:
        """File every object, now and from now on, under each of ``keys(obj)``.

        Declaring an index again replaces it: informers are shared, and each namespace's caches
        declare the indexes they read.
        """
        self._indexes.add(index, keys, self._items)

    def by_index(self, index: str, key: str) -> list[T]:
        """The cached objects filed under ``key`` in ``index``, sorted by name."""
        names = self._indexes.names(index, key)
        self.objects_read += len(names)
        return [self._items[name] for name in sorted(names)]

    def index_size(self, index: str, key: str) -> int:
        """How many objects ``by_index(index, key)`` would return (reads none)."""
        return len(self._indexes.names(index, key))

    def delivered(self, name: str, resource_version: str) -> bool:
        """Whether the object at this resourceVersion is, or lately was, in the cache.

        True for the cached object's own version and for versions delivered a short while ago
        (a bounded memory): resourceVersions are opaque, so "this one or a later one" cannot be
        told from the value itself, only from having seen it go by.
        """
        return (
            self._versions.get(name) == resource_version or (name, resource_version) in self._recent
        )

    def list_mark(self) -> int:
        """A mark for "now", for :meth:`relisted_since`."""
        return self._lists_started

    def relisted_since(self, mark: int) -> bool:
        """Whether a list *requested after* ``mark`` was taken has replaced the cache.

        Such a list reflects every write that completed before the mark (a list without a
        resourceVersion is a consistent read), so the cache holds those writes or later states.
        """
        return self._listed_from > mark

    def items(self) -> list[T]:
        """All cached objects, sorted by name (O(all): readers of a few use :meth:`by_index`)."""
        self.objects_read += len(self._items)
        return [self._items[name] for name in sorted(self._items)]

    def subscribe(self, callback: Callback[T]) -> Callable[[], None]:
        """Call ``callback(event_type, obj)`` on every change; returns an unsubscribe function."""
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._subscribers.remove(callback)

        return unsubscribe

    # --- loop ------------------------------------------------------------------------------

    async def _run(self) -> None:
        transport: Transport | None = None
        try:
            while True:
                # a fresh retrying per healthy period: backoff resets after a good stream
                async for attempt in tenacity.AsyncRetrying(
                    wait=self._policy.reconnect_wait(),
                    retry=tenacity.retry_if_exception_type(Exception),
                    before_sleep=self._before_reconnect,
                ):
                    with attempt:
                        if transport is None:
                            transport = await self._open_transport()
                        await self._session(transport)
        finally:
            if transport is not None:
                with contextlib.suppress(Exception):
                    await transport.close()

    def _before_reconnect(self, state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        self._count(reconnects=1)
        self._set_error(error)
        delay = state.next_action.sleep if state.next_action is not None else 0.0
        if error is None or isinstance(error, KubeError):
            self._log.info("watch reconnecting", error=str(error), delay=round(delay, 3))
        else:  # a bug, not the network: keep the traceback
            self._log.error("watch crashed", delay=round(delay, 3), exc_info=error)

    async def _session(self, transport: Transport) -> None:
        """List if needed, then watch once; return when reconnecting should not back off."""
        if self._version is None:
            await self._list(transport)
        loop = asyncio.get_running_loop()
        started, delivered = loop.time(), 0
        params: dict[str, str | int] = {
            "resourceVersion": self._version or "",
            "timeoutSeconds": self._policy.watch_timeout,
            "allowWatchBookmarks": "true",
        }
        idle = self._policy.watch_timeout + self._policy.watch_idle_grace
        error: Exception | None = None
        try:
            async with contextlib.aclosing(
                transport.stream(self._resource, self.namespace, params, idle)
            ) as stream:
                async for event in stream:
                    self._apply(event)
                    delivered += 1
        except Exception as e:
            error = e
        elapsed = loop.time() - started
        if error is None and elapsed >= 0.9 * self._policy.watch_timeout:
            self._set_error(None)  # normal rotation: re-watch at once from the last version
            return
        if error is None:
            error = _EndedEarly(f"watch {self._resource.plural} {self.namespace}: ended early")
        if isinstance(error, Gone):
            self._version = None  # relist next
        if not (delivered or elapsed >= self._policy.healthy_after):
            raise error  # tenacity backs off before the next try
        # a blip after a good stream: reconnect now, with the backoff reset
        self._count(reconnects=1)
        self._set_error(error)
        self._log.info("watch reconnecting", error=str(error), delay=0)

    async def _list(self, transport: Transport) -> None:
        self._lists_started += 1
        this_list = self._lists_started
        items: dict[str, T] = {}
        versions: dict[str, str] = {}
        version: str | None = None
        params: dict[str, str | int] = {"limit": _LIST_PAGE}
        while True:
            page = await transport.request("GET", self._resource, self.namespace, params=params)
            meta = page.get("metadata") or {}
            # every page of a paged list is the same snapshot: the first page's version
            version = version or str(meta.get("resourceVersion") or "")
            for raw in page.get("items") or []:
                name = (raw.get("metadata") or {}).get("name")
                if name:
                    items[name] = self._parse(raw)
                    versions[name] = str((raw.get("metadata") or {}).get("resourceVersion") or "")
            token = meta.get("continue")
            if not token:
                break
            params = {"limit": _LIST_PAGE, "continue": token}
        old, self._items = self._items, items
        self._indexes.rebuild(items)
        self._version = version or None
        self._versions = versions
        self._recent.extend(versions.items())
        self._listed_from = this_list
        first = self._stats.lists == 0
        self._count(lists=1, relists=0 if first else 1)
        self._synced.set()
        self._set_error(None)
        self._log.debug("informer listed", items=len(items), version=version, relist=not first)
        for name, obj in old.items():
            if name not in items:
                self._notify(DELETED, obj)
        for name, obj in items.items():
            before = old.get(name)
            if before is None:
                self._notify(ADDED, obj)
            elif before != obj:
                self._notify(MODIFIED, obj)

    def _apply(self, event: Obj) -> None:
        kind = event.get("type")
        raw = event.get("object") or {}
        if kind == "ERROR":
            code = raw.get("code")
            code = code if isinstance(code, int) else 500
            raise error_for_status(
                code,
                f"watch {self._resource.plural} {self.namespace}: {raw.get('message', raw)}",
                raw.get("reason"),
            )
        meta = raw.get("metadata") or {}
        version, name = meta.get("resourceVersion"), meta.get("name")
        if kind == "BOOKMARK" or kind not in (ADDED, MODIFIED, DELETED) or not name:
            if kind != "BOOKMARK":
                self._log.warning("watch sent an unexpected event", event_type=kind)
            if version:
                self._version = str(version)
            return
        obj = self._parse(raw)
        if kind == DELETED:
            self._indexes.put(name, self._items.pop(name, None), None)
            self._versions.pop(name, None)
        else:
            self._indexes.put(name, self._items.get(name), obj)
            self._items[name] = obj
            if version:
                self._versions[name] = str(version)
        if version:  # only after the object is applied: a failure re-watches from before it
            self._recent.append((name, str(version)))
            self._version = str(version)
        self._count(events=1)
        self._notify(kind, obj)

    def _notify(self, event_type: str, obj: T) -> None:
        for callback in list(self._subscribers):
            try:
                callback(event_type, obj)
            except Exception:
                self._log.exception("informer callback failed", event_type=event_type)

    def _count(self, **deltas: int) -> None:
        s = self._stats
        self._stats = InformerStats(
            lists=s.lists + deltas.get("lists", 0),
            relists=s.relists + deltas.get("relists", 0),
            reconnects=s.reconnects + deltas.get("reconnects", 0),
            events=s.events + deltas.get("events", 0),
        )

    def _set_error(self, error: BaseException | None) -> None:
        self.last_error = error
        self._changed.set()
        self._changed = asyncio.Event()

    def _raise_if_permanent(self) -> None:
        error = self.last_error
        if isinstance(error, KubeError) and not isinstance(error, Unavailable | Gone):
            raise type(error)(
                f"{self.kind} informer for {self.namespace!r} cannot list: {error.message}",
                status=error.status,
                reason=error.reason,
            ) from error
