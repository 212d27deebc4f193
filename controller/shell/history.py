"""The full decision history, with every metric reading, in a ConfigMap per rollout.

The state annotation keeps only the last few decisions (see `controller.core.state`); this is where
the rest goes: ConfigMap ``ptc-history-<service>`` in the Service's namespace, key ``history``,
a JSON list of decision records, oldest first, bounded to `LIMIT` records and `BYTES` bytes
(the API server's limit for a ConfigMap is 1 MiB); key ``target``, the rollout revision the records
belong to; key ``version``, the format's version (absent in ConfigMaps from before it existed,
which are version 1). It is written best-effort after the state:
a failed write is logged and never holds up the rollout (the decisions are also in the Events
and the newest ones in the annotation). `ptc status` and `ptc report` read it when present.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

import structlog

from controller.core.priority import Urgency
from controller.core.state import DecisionRecord, StateError, cut_text, decode_record, record_json
from controller.shell.gate import urgency
from controller.shell.kube import Conflict, KubeError, NotFound
from controller.tasks import cancel_and_wait

log = structlog.get_logger("ptc.history")

KEY = "history"
TARGET_KEY = "target"  # the rollout revision (`RolloutState.revision`) the records belong to
VERSION_KEY = "version"
VERSION = 1  # of the ConfigMap's format; a reader refuses a newer one rather than misread it
LIMIT = 200  # records kept
BYTES = 512 * 1024  # encoded size kept, well under the 1 MiB a ConfigMap may hold
LABELS = {"app.kubernetes.io/managed-by": "ptc", "ptc.dev/role": "history"}


class HistoryKube(Protocol):
    """The adapter calls this module needs (`controller.shell.kube.Kube` has them)."""

    async def get_configmap(self, namespace: str, name: str) -> tuple[dict[str, str], str]: ...

    async def write_configmap(
        self,
        namespace: str,
        name: str,
        data: dict[str, str],
        *,
        resource_version: str | None,
        labels: dict[str, str] | None = None,
        annotations: dict[str, str] | None = None,
    ) -> str: ...

    async def annotate_configmap(
        self, namespace: str, name: str, annotations: dict[str, str]
    ) -> str: ...


def configmap_name(service: str) -> str:
    """The history ConfigMap of a rollout on `service`."""
    return f"ptc-history-{service}"


def record_key(r: DecisionRecord) -> tuple[str, int, str, str, str]:
    """What makes a decision record the same one in the ConfigMap and in the annotation."""
    # Texts as the annotation cuts them: its copy of a record with a long `by` is the same one.
    return (r.at.isoformat(), r.step, r.phase, cut_text(r.decision), cut_text(r.by))


def merge(*histories: Iterable[DecisionRecord]) -> tuple[DecisionRecord, ...]:
    """All records once, oldest first; a record seen twice keeps its first (fuller) copy.

    Pass the ConfigMap's records before the annotation's: the annotation's copies of the same
    decisions have their readings stripped.
    """
    seen: dict[tuple[str, int, str, str, str], DecisionRecord] = {}
    for history in histories:
        for r in history:
            seen.setdefault(record_key(r), r)
    return tuple(sorted(seen.values(), key=lambda r: r.at))


def encode(records: Sequence[DecisionRecord]) -> str:
    """The newest records that fit `LIMIT` and `BYTES`, as the ConfigMap's JSON."""
    kept: list[str] = []
    size = 2
    for r in reversed(records[-LIMIT:]):
        item = json.dumps(record_json(r), separators=(",", ":"), ensure_ascii=False)
        size += len(item.encode()) + 1
        if size > BYTES:
            break
        kept.append(item)
    return "[" + ",".join(reversed(kept)) + "]"


def decode(text: str) -> tuple[DecisionRecord, ...]:
    """The newest `LIMIT` records in a history ConfigMap's JSON; StateError if it is not that."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StateError(f"history is not JSON: {exc.msg}") from exc
    except RecursionError as exc:  # "[[[[..." by the megabyte
        raise StateError("history is not a list of records: nested too deeply") from exc
    except ValueError as exc:  # a number of more digits than Python converts
        raise StateError(f"history is not a list of records: {str(exc)[:80]}") from exc
    if not isinstance(raw, list):
        raise StateError("history is not a JSON list")
    first = max(0, len(raw) - LIMIT)
    return tuple(decode_record(raw[i], f"history[{i}]") for i in range(first, len(raw)))


def check_version(data: Mapping[str, str]) -> None:
    """StateError unless the ConfigMap's format is one this ptc reads."""
    raw = data.get(VERSION_KEY, "1")
    if not re.fullmatch(r"[0-9]{1,9}", raw) or int(raw) < 1:
        raise StateError(f"history ConfigMap has no valid {VERSION_KEY!r} (got {raw[:40]!r})")
    if int(raw) > VERSION:
        raise StateError(
            f"history ConfigMap was written by a newer ptc (version {raw}; this ptc reads up to "
            f"{VERSION})"
        )


async def read(
    kube: HistoryKube, namespace: str, service: str, revision: str
) -> tuple[DecisionRecord, ...]:
    """The recorded history of rollout revision `revision` (empty when there is none).

    KubeError or StateError when it cannot be read.
    """
    try:
        data, _ = await kube.get_configmap(namespace, configmap_name(service))
    except NotFound:
        return ()
    if data.get(TARGET_KEY) != revision:
        return ()  # an earlier rollout's, not yet replaced
    check_version(data)
    return decode(data.get(KEY, "[]"))


async def claim(
    kube: HistoryKube, namespace: str, service: str, revision: str, annotations: dict[str, str]
) -> None:
    """Move the history ConfigMap's resourceVersion (a new leader's claim; see reconciler.claim).

    A write the deposed leader still has on its way carries the resourceVersion it read, or
    none (a create): either now gets 409, and its retry is not sent (the write fence). The
    annotations are set by a merge patch (the data is not sent back); a missing ConfigMap is
    created empty with them. The writer's next PUT drops them: the resourceVersion has moved.
    """
    name = configmap_name(service)
    for _ in range(2):
        try:
            await kube.annotate_configmap(namespace, name, annotations)
            return
        except NotFound:
            pass
        empty = {TARGET_KEY: revision, VERSION_KEY: str(VERSION), KEY: "[]"}
        try:
            await kube.write_configmap(
                namespace,
                name,
                empty,
                resource_version=None,
                labels=dict(LABELS),
                annotations=annotations,
            )
            return
        except Conflict:
            continue  # created meanwhile (a late create of the old leader's): annotate that
    raise Conflict(f"configmaps {namespace}/{name}: created and deleted while being claimed")


class HistoryWriter:
    """Appends a rollout's decisions to its ConfigMap in the background, one write at a time."""

    def __init__(self, kube: HistoryKube, namespace: str, service: str) -> None:
        self._kube = kube
        self._namespace = namespace
        self._name = configmap_name(service)
        self._pending: list[DecisionRecord] = []
        self._revision = ""
        self._task: asyncio.Task[None] | None = None
        self.failures = 0  # writes given up on (for tests and status)

    def add(self, revision: str, records: Iterable[DecisionRecord]) -> None:
        """Queue `records` of rollout revision `revision` for the ConfigMap; returns at once.

        A new revision starts a new history (as the state does), replacing the last one's.
        """
        if revision != self._revision:
            self._pending.clear()
            self._revision = revision
        self._pending.extend(records)
        if self._pending and (self._task is None or self._task.done()):
            # Best-effort bookkeeping: routine, whatever the urgency of the write that added
            # the records (a task copies the context it is created in).
            with urgency(Urgency.ROUTINE):
                self._task = asyncio.get_running_loop().create_task(
                    self._drain(), name=f"history:{self._name}"
                )

    async def flush(self) -> None:
        """Wait until everything queued so far has been written (or given up on)."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    async def close(self) -> None:
        """Stop writing; what is still queued is dropped (it is in the Events)."""
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def _drain(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            await self._write(self._revision, batch)

    async def _write(self, revision: str, batch: list[DecisionRecord]) -> None:
        for _ in range(3):  # a Conflict is another writer (an old leader): re-read and merge
            try:
                try:
                    data, version = await self._kube.get_configmap(self._namespace, self._name)
                    same = data.get(TARGET_KEY) == revision
                    existing = _decoded(data.get(KEY, "[]")) if same else ()
                except NotFound:
                    existing, version = (), None
                body = {
                    TARGET_KEY: revision,
                    VERSION_KEY: str(VERSION),
                    KEY: encode(merge(existing, batch)),
                }
                await self._kube.write_configmap(
                    self._namespace,
                    self._name,
                    body,
                    resource_version=version,
                    labels=dict(LABELS),
                )
                return
            except Conflict:
                continue
            except KubeError as exc:
                self._give_up(batch, str(exc))
                return
            except Exception as exc:  # best effort: never let a bug here touch the rollout
                log.exception("decision history write crashed")
                self._give_up(batch, repr(exc))
                return
        self._give_up(batch, "conflicts on every attempt")

    def _give_up(self, batch: list[DecisionRecord], error: str) -> None:
        self.failures += 1
        log.warning(
            "decision history not written (the decisions are in the Events)",
            configmap=f"{self._namespace}/{self._name}",
            records=len(batch),
            error=error,
        )


def _decoded(text: str) -> tuple[DecisionRecord, ...]:
    # A ConfigMap someone broke by hand is replaced rather than blocking every later write.
    try:
        return decode(text)
    except StateError as exc:
        log.warning("decision history unreadable; starting it afresh", error=str(exc))
        return ()
