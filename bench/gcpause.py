"""The bench process's full garbage collections: how often, and how long they stop it.

The bench process is the sandbox (API server, simulated pods, traffic). With a 2000-Service
fleet it holds millions of objects, and a full (generation 2) collection walks all of them
with the event loop stopped: every API request, watch event and scrape waits. `GcPauses`
records each one; `freeze` moves what exists now (the fleet, built before the controllers
start) out of the collector's sight, so later collections walk only what came after (gc.freeze,
as long-running servers use it after start-up).
"""

from __future__ import annotations

import gc
import time
from typing import Any


class GcPauses:
    """Full collections from `start()` to `stop()`: count, longest, total (seconds)."""

    def __init__(self) -> None:
        self.pauses: list[float] = []
        self._began: float | None = None

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            self._began = time.perf_counter()
        elif self._began is not None:
            self.pauses.append(time.perf_counter() - self._began)
            self._began = None

    def start(self) -> None:
        gc.callbacks.append(self._callback)

    def stop(self) -> None:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)

    def summary(self) -> str:
        if not self.pauses:
            return "no full collections"
        return (
            f"{len(self.pauses)} full collections, longest {max(self.pauses):.2f}s, "
            f"total {sum(self.pauses):.1f}s"
        )


def freeze() -> int:
    """Collect once, then exempt every object alive now from later collections; how many."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
