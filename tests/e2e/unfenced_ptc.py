"""`ptc` whose leadership never ends once won: the negative control of test_fencing.py.

Run as ``python -m tests.e2e.unfenced_ptc run ...``. The elector never steps down and its time
left never runs out, so neither the reconciler's leadership check nor the client's write fence
stops a deposed leader: what a controller without fencing would do after a SIGSTOP.
"""

from __future__ import annotations

import sys

from controller.ops.cli import main
from controller.shell.leader import LeaderElector


def _never_steps_down(self: LeaderElector, reason: str) -> None:
    return None


def _leading(self: LeaderElector) -> bool:
    return self._leading and not self._stopping


def _time_left(self: LeaderElector) -> float | None:
    return 3600.0 if _leading(self) else None


LeaderElector._step_down = _never_steps_down  # type: ignore[method-assign]
LeaderElector.is_leader = _leading  # type: ignore[method-assign]
LeaderElector.time_left = _time_left  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.exit(main())
