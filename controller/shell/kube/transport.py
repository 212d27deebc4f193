"""One kr8s connection: single HTTP requests and watch streams, with timeouts and error translation.

No retries here (they live in :class:`~controller.shell.kube.client.Kube` and the informer's
reconnect loop). What kr8s does that shapes this module (kr8s 0.20, ``kr8s/_api.py``):

- ``kr8s.asyncio.api()`` caches Api objects per event loop and kwargs; :meth:`Transport.open`
  builds a fresh ``Api`` every time instead, so a closed or stale one is never handed back.
- Its httpx client has *no* timeout by default: every request here passes one, and the whole
  call also runs under ``asyncio.timeout``.
- On 401/403 ``call_api`` re-reads the credentials and *recreates its httpx client*, which aborts
  every stream open on it. Informers therefore each open their own Transport, so a forbidden
  request elsewhere cannot cut their watches.
- Transport errors from httpx pass through kr8s unwrapped: :func:`translate` covers them.
- httpcore's pool matches *every* queued request against *every* connection each time a request
  starts or ends (``_assign_requests_to_connections``): with hundreds of reconcilers writing at
  once through one client, that is quadratic and saturated a core at 300 rollouts. At most
  :data:`MAX_IN_FLIGHT` requests per Transport reach the pool; the rest wait at a priority gate
  (constant cost each), within the same request timeout.
- That wait is where a behind controller queues its writes, so it is ordered: a rollback's or a
  command's requests (the reconcile sets :data:`controller.shell.gate.URGENCY`) go before routine
  ones, and routine requests hold at most :data:`ROUTINE_IN_FLIGHT` slots, keeping the rest
  free for urgent work (:mod:`controller.core.priority`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, Callable, Mapping
from typing import Any

import httpx
from kr8s.asyncio import Api

from controller.core.priority import GatePolicy
from controller.shell.gate import PriorityGate
from controller.shell.kube.errors import KubeError, translate
from controller.shell.kube.resources import Resource

Obj = dict[str, Any]

MERGE_PATCH = "application/merge-patch+json"
# httpx keeps 20 idle connections alive by default: more in flight would open and close extra
# connections, and lengthen the pool's scans (see the module docstring).
MAX_IN_FLIGHT = 20
# A rollback's four or so writes (scale, scale, state, Event) find a free slot at once.
ROUTINE_IN_FLIGHT = 16


class Transport:
    """A kr8s ``Api`` (its own httpx client) plus the request timeout; see the module docstring."""

    def __init__(self, api: Any, kubeconfig: str | None, timeout: float) -> None:
        self._api = api
        self.kubeconfig = kubeconfig
        self.timeout = timeout
        # watch streams are not counted
        self.slots = PriorityGate(GatePolicy(MAX_IN_FLIGHT, ROUTINE_IN_FLIGHT))

    @classmethod
    async def open(cls, kubeconfig: str | None, request_timeout: float) -> Transport:
        """Load credentials (kubeconfig, else in-cluster service account) and check the server."""
        # bypass_factory: a new Api, not kr8s's per-event-loop cached one
        api = Api(kubeconfig=kubeconfig, bypass_factory=True)
        try:
            async with asyncio.timeout(request_timeout):
                await api  # loads credentials, then GET /version
        except BaseException as e:
            await _close_session(api)  # the version check may have opened a connection
            if not isinstance(e, Exception):
                raise
            where = kubeconfig or "in-cluster/default"
            raise translate(e, f"connect (kubeconfig={where})") from e
        api.timeout = httpx.Timeout(request_timeout)
        return cls(api, kubeconfig, request_timeout)

    async def fork(self) -> Transport:
        """Another Transport to the same server, with its own HTTP client."""
        return await Transport.open(self.kubeconfig, self.timeout)

    async def close(self) -> None:
        """Close the HTTP client."""
        await _close_session(self._api)

    async def request(
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
        ready: Callable[[], object] | None = None,
    ) -> Obj:
        """One HTTP request; the decoded JSON answer, or a KubeError.

        ``ready`` is called once the request holds its slot, right before it is sent; what it
        raises (a KubeError: the fence's NotLeader) stops the request unsent.
        """
        what = describe(method, resource, namespace, name, subresource)
        kwargs: dict[str, Any] = {"timeout": httpx.Timeout(self.timeout)}
        if params:
            kwargs["params"] = dict(params)
        if body is not None:
            kwargs["content"] = json.dumps(body)
        if content_type is not None:
            kwargs["headers"] = {"Content-Type": content_type}
        try:
            async with asyncio.timeout(self.timeout), self.slots.slot():
                if ready is not None:
                    ready()
                async with self._api.call_api(
                    method,
                    version=resource.api_version,
                    namespace=namespace,
                    url=resource.path(name, subresource),
                    **kwargs,
                ) as response:
                    data = response.json()
        except KubeError:
            raise
        except Exception as e:
            raise translate(e, what) from e
        if not isinstance(data, dict):
            raise KubeError(f"{what}: expected a JSON object, got {type(data).__name__}")
        return data

    async def stream(
        self, resource: Resource, namespace: str, params: Mapping[str, str | int], idle: float
    ) -> AsyncGenerator[Obj, None]:
        """Watch events (decoded JSON lines) until the server ends the stream.

        Opening is bounded by the request timeout; afterwards a stream silent for ``idle``
        seconds is treated as dead (Unavailable). Use under ``contextlib.aclosing``.
        """
        what = describe("watch", resource, namespace)
        try:
            async with asyncio.timeout(self.timeout) as opening:
                async with self._api.call_api(
                    "GET",
                    version=resource.api_version,
                    namespace=namespace,
                    url=resource.path(),
                    params={**params, "watch": "true"},
                    stream=True,
                    timeout=httpx.Timeout(self.timeout, read=idle),
                ) as response:
                    # from here httpx's read timeout bounds each wait, not the opening deadline
                    opening.reschedule(None)
                    async for line in response.aiter_lines():
                        if line.strip():
                            yield json.loads(line)
        except Exception as e:
            raise translate(e, what) from e


async def _close_session(api: Any) -> None:
    """Close a kr8s Api's httpx client (kr8s has no public close)."""
    session = getattr(api, "_session", None)
    if session is not None:
        await session.aclose()


def describe(
    verb: str,
    resource: Resource,
    namespace: str,
    name: str | None = None,
    subresource: str | None = None,
) -> str:
    """``patch deployments/scale default/web``: what a request did, for error messages."""
    kind = f"{resource.plural}/{subresource}" if subresource else resource.plural
    where = f"{namespace}/{name}" if name else namespace
    return f"{verb.lower()} {kind} {where}"
