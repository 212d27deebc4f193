"""The sandbox Kubernetes API server: real REST/JSON over HTTP on 127.0.0.1, for kr8s and tests.

Usage (the lead composes this with :class:`~controller.sandbox.workload.Workload`)::

    api = ApiServer()                      # port=0: a free port is chosen at start()
    await api.start()
    kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig", token=None)
    ...                                    # kr8s.asyncio.api(kubeconfig=str(kubeconfig))
    await api.stop()

``ApiServer(host="127.0.0.1", port=0, *, tokens=None, anonymous=True, history_limit=10_000,
seed=None, version=KUBERNETES_VERSION, echo_order="random")``

- ``url``, ``store`` (:class:`Store`), ``registry`` (:class:`Registry`), ``authorizer``, ``faults``,
  ``echo`` (:class:`EchoOrdering`: whether a write's watch event reaches watchers before, with
  or after its response; random per write by default, as on a real server)
- ``write_kubeconfig(path, token=None, namespace="default") -> Path``
- direct helpers that bypass HTTP, auth, faults and accounting: ``create(obj)``,
  ``get(kind, name, namespace)``, ``list(kind, namespace, label_selector)``, ``update(obj)``,
  ``patch(kind, name, patch, namespace, patch_type="merge"|"json"|"strategic", subresource)``,
  ``delete(kind, name, namespace)``; ``kind`` is ``"Deployment"`` or ``"events.k8s.io/v1/Event"``
- ``add_token(token, user, rules=None)``; ``set_faults(error_rate=, error_code=, retry_after=,
  latency=, verbs=, resources=)``; ``clear_faults()``; ``cut_watches(abort=False)``;
  ``compact()`` (force 410 Gone for older resourceVersions)
- ``request_counts() -> Counter[RequestKey]``, ``count(verb=, group=, resource=, user=)``,
  ``reset_counts()``
- ``audit`` (:class:`~controller.sandbox.audit.Audit`: every decided write, who sent it, its
  code and commit order) and ``gate`` (:class:`~controller.sandbox.audit.WriteGate`: hold a
  chosen write after it was received, apply it when released, whatever its sender did meanwhile)

Request semantics live in :mod:`controller.sandbox.registry`, the watch stream in
:mod:`controller.sandbox.watchstream`, the discovery documents in
:mod:`controller.sandbox.discovery`.

Served: see :mod:`controller.sandbox.kinds`. Not served: Namespaces (implicit), ReplicaSets,
server-side apply, deletecollection, finalizers, admission webhooks.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from aiohttp import web

from controller.sandbox import apierrors as errors
from controller.sandbox import discovery
from controller.sandbox.apiaccess import Authorizer, Faults, Grant, RequestKey, Rule
from controller.sandbox.audit import WRITE_VERBS, Arrival, Audit, WriteGate, precondition
from controller.sandbox.echo import EchoOrdering
from controller.sandbox.kinds import RESOURCE_TYPES, ResourceType
from controller.sandbox.kubeconfig import write_kubeconfig
from controller.sandbox.registry import JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH, Registry
from controller.sandbox.requestinfo import (
    RequestInfo,
    int_param,
    parse_resource_path,
)
from controller.sandbox.store import Store, Watch
from controller.sandbox.watchstream import serve_watch

Obj = dict[str, Any]
_AUDIT = web.RequestKey("audit", tuple)
_PATCH_TYPES = {"merge": MERGE_PATCH, "json": JSON_PATCH, "strategic": STRATEGIC_PATCH}


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        text=json.dumps(body), status=status, content_type="application/json", headers=headers
    )


class ApiServer:
    """An aiohttp Kubernetes API subset over a :class:`Store`; see the module docstring."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        tokens: dict[str, Grant] | None = None,
        anonymous: bool = True,
        history_limit: int = 10_000,
        seed: int | None = None,
        version: str = discovery.KUBERNETES_VERSION,
        echo_order: str = "random",
    ) -> None:
        self.host, self.port = host, port
        self.store = Store(history_limit=history_limit)
        self.registry = Registry(self.store, seed=seed)
        self.authorizer = Authorizer(tokens, anonymous=anonymous)
        self.faults = Faults()
        self.echo = EchoOrdering(echo_order, seed=seed)
        self.version = version
        self._counts: Counter[RequestKey] = Counter()
        self.audit = Audit()
        self.gate = WriteGate()
        self._runner: web.AppRunner | None = None
        self._watch_requests: dict[Watch, web.Request] = {}

    # --- lifecycle -----------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` (valid after :meth:`start`)."""
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        """Listen on ``host:port`` (a free port when 0)."""
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = getattr(site, "_server", None)
        if self.port == 0 and server is not None and server.sockets:
            self.port = server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """End open watches and held writes, then stop listening and close connections."""
        self.gate.release_all()
        self.store.close_watches()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> ApiServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def write_kubeconfig(
        self, path: str | Path, token: str | None = None, namespace: str = "default"
    ) -> Path:
        """Write a kubeconfig for this server (with ``token`` as bearer token); return its path."""
        return write_kubeconfig(path, self.url, token, namespace)

    # --- controls for tests ------------------------------------------------------------------

    def add_token(self, token: str, user: str, rules: list[Rule] | None = None) -> None:
        """Accept ``token`` as ``user``, limited to ``rules`` (None: allow all)."""
        self.authorizer.tokens[token] = Grant(user, rules)

    def set_faults(self, **changes: Any) -> None:
        """Change fault injection fields (see :class:`Faults`) while running."""
        for key, value in changes.items():
            if not hasattr(self.faults, key):
                raise TypeError(f"unknown fault setting {key!r}")
            if key in ("verbs", "resources") and value is not None:
                value = frozenset(value)
            setattr(self.faults, key, value)

    def clear_faults(self) -> None:
        """No injected errors or latency."""
        self.faults = Faults(rng=self.faults.rng)

    def cut_watches(self, abort: bool = False) -> int:
        """End every open HTTP watch stream now (``abort``: drop the TCP connection instead)."""
        if abort:
            for request in list(self._watch_requests.values()):
                if request.transport is not None:
                    request.transport.close()
        return self.store.close_watches()

    def compact(self) -> None:
        """Drop the watch history: watches from older resourceVersions get 410 Gone."""
        self.store.compact()

    def request_counts(self) -> Counter[RequestKey]:
        """A copy of the request counters by (verb, group, resource, user)."""
        return Counter(self._counts)

    def count(
        self,
        verb: str | None = None,
        group: str | None = None,
        resource: str | None = None,
        user: str | None = None,
    ) -> int:
        """Requests matching every given field."""
        return sum(
            n
            for k, n in self._counts.items()
            if (verb is None or k.verb == verb)
            and (group is None or k.group == group)
            and (resource is None or k.resource == resource)
            and (user is None or k.user == user)
        )

    def reset_counts(self) -> None:
        """Zero the request counters."""
        self._counts.clear()

    # --- direct helpers (no HTTP) ------------------------------------------------------------

    @staticmethod
    def resource(kind: str) -> ResourceType:
        """The ResourceType for ``"Deployment"``, ``"pods"`` or ``"events.k8s.io/v1/Event"``."""
        api_version, _, bare = kind.rpartition("/")
        for rt in RESOURCE_TYPES:
            if bare in (rt.kind, rt.plural) and (not api_version or api_version == rt.api_version):
                return rt
        raise KeyError(f"kind {kind!r} is not served by the sandbox")

    def create(self, obj: Obj) -> Obj:
        """Create an object (its ``apiVersion``/``kind`` pick the resource)."""
        rt = self.resource(f"{obj.get('apiVersion', '')}/{obj['kind']}")
        return self.registry.create(rt, obj.get("metadata", {}).get("namespace") or "default", obj)

    def get(self, kind: str, name: str, namespace: str = "default") -> Obj:
        """Get an object (404 ApiError if missing)."""
        return self.registry.get(self.resource(kind), namespace, name)

    def list(
        self, kind: str, namespace: str | None = "default", label_selector: str | None = None
    ) -> list[Obj]:
        """List objects (``namespace=None``: all namespaces)."""
        items: list[Obj] = self.registry.list(self.resource(kind), namespace, label_selector)[
            "items"
        ]
        return items

    def update(self, obj: Obj) -> Obj:
        """Replace an object (PUT semantics)."""
        rt = self.resource(f"{obj.get('apiVersion', '')}/{obj['kind']}")
        meta = obj["metadata"]
        return self.registry.update(rt, meta.get("namespace") or "default", meta["name"], obj)[0]

    def patch(
        self,
        kind: str,
        name: str,
        patch: Any,
        namespace: str = "default",
        patch_type: str = "merge",
        subresource: str | None = None,
    ) -> Obj:
        """Patch an object with a merge, json or strategic patch."""
        return self.registry.patch(
            self.resource(kind),
            namespace,
            name,
            _PATCH_TYPES[patch_type],
            json.dumps(patch).encode(),
            subresource,
        )

    def delete(
        self, kind: str, name: str, namespace: str = "default", grace_period: int | None = None
    ) -> Obj:
        """Delete an object (graceful for Pods unless ``grace_period=0``)."""
        options = {} if grace_period is None else {"gracePeriodSeconds": grace_period}
        return self.registry.delete(self.resource(kind), namespace, name, options)

    # --- HTTP ------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        try:
            return await self._dispatch(request)
        except errors.ApiError as e:
            return _json(e.status, e.code, e.headers)

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path.rstrip("/") or "/"
        grant = self.authorizer.authenticate(request.headers.get("Authorization"))
        static = discovery.document(path, f"{self.host}:{self.port}", self.version)
        if static is not None:
            if request.method != "GET":
                raise errors.method_not_allowed()
            self._counts[RequestKey("get", "", path, grant.user)] += 1
            return _json(static)
        info = parse_resource_path(request.method, path, request.query)
        rt = info.rt
        resource = f"{rt.plural}/{info.subresource}" if info.subresource else rt.plural
        self._counts[RequestKey(info.verb, rt.group, resource, grant.user)] += 1
        handler = self._handlers()[info.verb]
        if info.verb not in WRITE_VERBS:
            await self._admit(grant, info, resource)
            return await handler(request, info)
        arrival = Arrival(grant.user, info.verb, resource, info.namespace, info.name)
        held = False
        try:
            await self._admit(grant, info, resource)
            # fully received (aiohttp keeps the body for the handler)
            arrival = replace(arrival, condition=precondition(info.verb, await request.read()))
            held = await self.gate.pass_through(arrival)
            request[_AUDIT] = (arrival, held)
            return await handler(request, info)
        except errors.ApiError as e:
            self.audit.record(arrival, e.code, None, held=held)
            raise

    async def _admit(self, grant: Grant, info: RequestInfo, resource: str) -> None:
        """Injected faults, then authorization: the refusals before a request is handled."""
        if self.faults.applies(info.verb, resource):
            if self.faults.latency > 0:
                await asyncio.sleep(self.faults.latency)
            fault = self.faults.error()
            if fault is not None:
                raise fault
        rt = info.rt
        self.authorizer.authorize(
            grant, info.verb, rt.group, rt.plural, info.subresource, info.namespace, info.name
        )

    def _handlers(
        self,
    ) -> dict[str, Callable[[web.Request, RequestInfo], Awaitable[web.StreamResponse]]]:
        return {
            "get": self._get,
            "list": self._list,
            "watch": self._watch,
            "create": self._create,
            "update": self._update,
            "patch": self._patch,
            "delete": self._delete,
        }

    @staticmethod
    async def _body(request: web.Request) -> Any:
        raw = await request.read()
        try:
            return json.loads(raw) if raw.strip() else None
        except ValueError as e:
            raise errors.bad_request(f"error decoding request body: {e}") from e

    async def _get(self, request: web.Request, info: RequestInfo) -> web.StreamResponse:
        assert info.name is not None
        if info.subresource == "scale":
            return _json(self.registry.get_scale(info.rt, info.namespace, info.name))
        return _json(self.registry.get(info.rt, info.namespace, info.name))

    async def _list(self, request: web.Request, info: RequestInfo) -> web.StreamResponse:
        q = request.query
        limit = int_param(q, "limit")
        return _json(
            self.registry.list(
                info.rt,
                info.namespace or None,
                q.get("labelSelector"),
                q.get("fieldSelector"),
                limit,
                q.get("continue"),
            )
        )

    # Each write handler reads its body first, then commits with no await in between, so the
    # resourceVersions from `first` on are exactly this write's (for the echo ordering).

    async def _create(self, request: web.Request, info: RequestInfo) -> web.StreamResponse:
        body = await self._body(request)
        first = self.store.resource_version + 1
        return await self._answer(
            request, first, _json(self.registry.create(info.rt, info.namespace, body), 201)
        )

    async def _update(self, request: web.Request, info: RequestInfo) -> web.StreamResponse:
        assert info.name is not None
        body = await self._body(request)
        first = self.store.resource_version + 1
        obj, created = self.registry.update(
            info.rt, info.namespace, info.name, body, info.subresource or None
        )
        return await self._answer(request, first, _json(obj, 201 if created else 200))

    async def _patch(self, request: web.Request, info: RequestInfo) -> web.StreamResponse:
        assert info.name is not None
        raw = await request.read()
        first = self.store.resource_version + 1
        obj = self.registry.patch(
            info.rt,
            info.namespace,
            info.name,
            request.headers.get("Content-Type", ""),
            raw,
            info.subresource or None,
        )
        return await self._answer(request, first, _json(obj))

    async def _delete(self, request: web.Request, info: RequestInfo) -> web.StreamResponse:
        assert info.name is not None
        options = await self._body(request) or {}
        if not isinstance(options, dict):
            raise errors.bad_request("DeleteOptions must be an object")
        grace = int_param(request.query, "gracePeriodSeconds")
        if grace is not None:
            options["gracePeriodSeconds"] = grace
        first = self.store.resource_version + 1
        obj = self.registry.delete(info.rt, info.namespace, info.name, options)
        return await self._answer(request, first, _json(obj))

    async def _watch(self, request: web.Request, info: RequestInfo) -> web.StreamResponse:
        return await serve_watch(request, info, self.registry, self.echo, self._watch_requests)

    async def _answer(
        self, request: web.Request, first: int, response: web.Response
    ) -> web.StreamResponse:
        """Send a write's response in the echo order chosen for it (a no-op write has none)."""
        committed = range(first, self.store.resource_version + 1)
        arrival, held = request[_AUDIT]
        # recorded at commit, before the echo ordering may delay the answer
        self.audit.record(arrival, response.status, committed[-1] if committed else None, held=held)
        if not committed:
            return response
        return await self.echo.respond(request, response, committed, self._watch_requests)
