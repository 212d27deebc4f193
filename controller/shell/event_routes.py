"""Which reconcilers an informer event is for: looked up by the name the event is about.

A pod event is about its Deployment, an EndpointSlice event about its Service, any other about
the object itself; the table maps (namespace, kind, that name) to the reconcilers whose rollout
names it, so an event wakes them at once, with no scan of every rollout for every pod event.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from controller.shell.reconciler import RolloutReconciler

RouteKey = tuple[str, str, str | None]  # namespace, kind, the name an event is about


class EventRoutes:
    """The route table over the current reconcilers, rebuilt on the first event after a change.

    ``on_service(reconciler, svc)`` is called after a reconciler has been handed a Service event
    (the daemon lets an unconfigured rollout go once its Service shows it has ended).
    """

    def __init__(
        self,
        reconcilers: Callable[[], list[RolloutReconciler]],
        on_service: Callable[[RolloutReconciler, Any], None],
    ) -> None:
        self._reconcilers = reconcilers
        self._on_service = on_service
        self._table: dict[RouteKey, list[RolloutReconciler]] | None = None

    def invalidate(self) -> None:
        """A reconciler came, went or changed its spec: rebuild the routes on the next event."""
        self._table = None

    def handler(self, namespace: str, kind: str) -> Callable[[str, Any], None]:
        """The informer callback for one namespace's `kind`."""

        def route(event_type: str, obj: Any) -> None:
            key = route_key(kind, obj)
            for reconciler in list(self._routes.get((namespace, kind, key), ())):
                reconciler.on_event(kind, event_type, obj)
                if kind == "services":
                    self._on_service(reconciler, obj)

        return route

    @property
    def _routes(self) -> dict[RouteKey, list[RolloutReconciler]]:
        if self._table is None:
            table: dict[RouteKey, list[RolloutReconciler]] = {}
            for r in self._reconcilers():
                ns, spec = r.spec.namespace, r.spec
                for kind, key in (
                    ("deployments", spec.stable.deployment),
                    ("deployments", spec.canary.deployment),
                    ("pods", spec.stable.deployment),
                    ("pods", spec.canary.deployment),
                    ("services", spec.service),
                    ("endpointslices", spec.service),
                ):
                    table.setdefault((ns, kind, key), []).append(r)
            self._table = table
        return self._table


def route_key(kind: str, obj: Any) -> str | None:
    """The name a watch event is routed by."""
    if kind == "pods":
        return str(obj.deployment) if obj.deployment else None
    if kind == "endpointslices":
        return str(obj.service)
    return str(obj.name)
