"""A monitor of DESIGN.md §4's safety invariants, checked after every write to the sandbox.

1. The Service selector matches at least one Ready pod (once it has matched one).
2. While shifting (progressing, holding, flipping), Ready pods behind the Service never drop
   below the floor N - maxUnavailable.
3. Only stable and canary pods are behind the Service (no foreign pod receives traffic) while
   ptc moves traffic: before a rollout starts the Service is the user's, and preflight must
   refuse a foreign pod rather than shift traffic around it.

Runs as a task beside a scenario; `violations` lists each break with the time and what was
seen, and `first_violation` is set at the first one so a test can fail at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from controller.core.state import StateError, decode_state
from controller.sandbox.world import Sandbox
from controller.tasks import cancel_and_wait

SHIFTING = ("progressing", "holding", "flipping")
TRAFFIC_PHASES = (*SHIFTING, "baking", "paused", "scaling-down", "rolling-back")
STATE_ANNOTATION = "ptc.dev/state"


@dataclass(frozen=True)
class Violation:
    """One broken invariant."""

    at: float  # seconds since the monitor started
    invariant: str
    detail: str

    def __str__(self) -> str:
        return f"+{self.at:.2f}s {self.invariant}: {self.detail}"


def _ready(pod: Mapping[str, Any]) -> bool:
    if pod["metadata"].get("deletionTimestamp"):
        return False
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _owner_deployment(pod: Mapping[str, Any]) -> str | None:
    for ref in pod["metadata"].get("ownerReferences") or ():
        if ref.get("kind") == "ReplicaSet":
            return str(ref["name"]).rsplit("-", 1)[0]
    return None


class InvariantMonitor:
    """Checks the invariants for one rollout's Service after every sandbox write."""

    def __init__(
        self,
        sandbox: Sandbox,
        namespace: str,
        service: str,
        stable: str,
        canary: str,
        floor: int,
    ) -> None:
        self.sandbox = sandbox
        self.namespace = namespace
        self.service = service
        self.deployments = {stable, canary}
        self.floor = floor
        self.violations: list[Violation] = []
        self.first_violation = asyncio.Event()
        self.checks = 0
        self._matched_once = False
        self._started = time.monotonic()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Check now and after every write from here on."""
        self.check()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="invariant-monitor")

    async def stop(self) -> None:
        """Stop watching."""
        task, self._task = self._task, None
        await cancel_and_wait(task, raise_failure=False)

    async def _run(self) -> None:
        watch = self.sandbox.api.store.watch(None, self.namespace, cuttable=False)
        try:
            while True:
                event = await watch.next()
                if event is None:
                    return
                self.check()
        finally:
            watch.close()

    def _violate(self, invariant: str, detail: str) -> None:
        self.violations.append(Violation(time.monotonic() - self._started, invariant, detail))
        self.first_violation.set()

    def check(self) -> None:
        """Check every invariant against the current objects."""
        self.checks += 1
        api = self.sandbox.api
        try:
            svc = api.get("services", self.service, self.namespace)
        except Exception:
            return
        selector: dict[str, str] = (svc.get("spec") or {}).get("selector") or {}
        phase = _phase((svc["metadata"].get("annotations") or {}).get(STATE_ANNOTATION))
        pods = api.list("pods", self.namespace)
        behind = [
            p
            for p in pods
            if selector
            and all((p["metadata"].get("labels") or {}).get(k) == v for k, v in selector.items())
        ]
        ready = [p for p in behind if _ready(p)]
        if ready:
            self._matched_once = True
        elif self._matched_once:
            self._violate(
                "selector matches a Ready pod",
                f"selector {selector} matches no Ready pod (phase {phase})",
            )
        if phase in SHIFTING and len(ready) < self.floor:
            self._violate(
                "Ready pods never under the floor while shifting",
                f"{len(ready)} Ready pods behind the Service < floor {self.floor} (phase {phase})",
            )
        foreign = sorted(
            p["metadata"]["name"] for p in ready if _owner_deployment(p) not in self.deployments
        )
        if foreign and phase in TRAFFIC_PHASES:
            self._violate("only stable and canary pods get traffic", f"foreign pods: {foreign}")


def _phase(raw: str | None) -> str | None:
    """The phase in a state annotation, as ptc reads it (any state version); None when there is
    no state or it cannot be read (then only the phase-independent invariants are checked)."""
    if not raw:
        return None
    try:
        return decode_state(raw).phase.value
    except StateError:
        return None
