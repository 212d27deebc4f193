"""What every typed call of :class:`~controller.shell.kube.client.Kube` sends its request through.

:class:`KubeBase` holds the connection and the write fence, and :meth:`KubeBase._call` is the one
path to the API server: each attempt bounded by the policy's timeout, Unavailable retried with
backoff (:func:`~controller.shell.kube.policy.call_with_retries`), and every write attempt sent
only while the fence says this process may still write.
"""

from __future__ import annotations

import asyncio
import functools
import socket
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from controller.shell.kube.errors import NotLeader
from controller.shell.kube.events import RepeatTracker
from controller.shell.kube.informer import Informer
from controller.shell.kube.policy import KubePolicy, call_with_retries
from controller.shell.kube.resources import Resource
from controller.shell.kube.transport import Obj, Transport, describe

Fence = Callable[[], float | None]
"""Seconds this process may still write (None or <= 0: it may not), read before each attempt
and again right before it is sent."""

WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class KubeBase:
    """The connection, informers, Event tracker and write fence shared by the typed calls."""

    def __init__(
        self,
        transport: Transport,
        policy: KubePolicy,
        *,
        clock: Callable[[], datetime] | None = None,
        instance: str | None = None,
    ) -> None:
        self._transport = transport
        self.policy = policy
        self._clock = clock or (lambda: datetime.now(UTC))
        self.instance = instance or socket.gethostname()
        self._informers: dict[tuple[str, str], Informer[Any]] = {}
        self._events = RepeatTracker()
        self.fence: Fence | None = None  # set by the daemon when leader election is on
        self.retries = 0  # Unavailable answers retried, for metrics

    async def _call(
        self,
        method: str,
        resource: Resource,
        namespace: str,
        name: str | None = None,
        subresource: str | None = None,
        *,
        params: Mapping[str, str | int] | None = None,
        body: Any = None,
        content_type: str | None = None,
        on_retry: Callable[[], None] | None = None,
        fenced: bool = True,
    ) -> Obj:
        """One request, retried on Unavailable (see :func:`call_with_retries`); writes fenced."""
        fence = self.fence if fenced and method in WRITES else None
        what = describe(method, resource, namespace, name, subresource)

        def still_leader() -> float:
            """The time this process may still write; NotLeader (nothing sent) when none."""
            assert fence is not None
            left = fence()
            if left is None or left <= 0:
                raise NotLeader(f"{what}: not sent, this process is no longer the leader")
            return left

        send = functools.partial(
            self._transport.request,
            method,
            resource,
            namespace,
            name,
            subresource,
            params=params,
            body=body,
            content_type=content_type,
        )

        async def attempt() -> Obj:
            if fence is None:
                return await send()
            # Checked here, and again once the request holds its connection slot, right before
            # it is sent (the wait for a slot is long when the controller is behind).
            left = still_leader()
            sending = False

            def ready() -> None:
                nonlocal sending
                still_leader()
                sending = True

            try:
                async with asyncio.timeout(left):
                    return await send(ready=ready)
            except TimeoutError:
                # The transport's own timeout raises Unavailable, so this one is ours.
                if not sending:
                    raise NotLeader(
                        f"{what}: not sent, leadership ran out while it waited for a connection "
                        f"slot ({left:.1f}s left when it queued)"
                    ) from None
                raise NotLeader(
                    f"{what}: cut short when leadership ran out ({left:.1f}s left at send); "
                    "it may or may not have been applied"
                ) from None

        def retrying() -> None:
            self.retries += 1
            if on_retry is not None:
                on_retry()

        return await call_with_retries(self.policy, attempt, what, retrying)
