"""Build a `RolloutState` for a test from the fields it cares about, by name.

``state(Phase.HOLDING, step=2, hold=Hold(T0), message="x")``: `Identity` and `Progress` fields
go to those records, everything else to the state itself. A paused state without a `pause`
paused progressing.
"""

from __future__ import annotations

from typing import Any

from controller.core.state import Identity, Pause, Phase, Progress, RolloutState

_IDENTITY = frozenset(Identity.__dataclass_fields__) - {"revision"}
_PROGRESS = frozenset(Progress.__dataclass_fields__) - {"phase"}


def state(phase: Phase, revision: str = "t", **fields: Any) -> RolloutState:
    """A state in `phase` of rollout target `revision` with `fields` set."""
    identity = {k: fields.pop(k) for k in list(fields) if k in _IDENTITY}
    progress = {k: fields.pop(k) for k in list(fields) if k in _PROGRESS}
    if phase is Phase.PAUSED:
        fields.setdefault("pause", Pause(Phase.PROGRESSING))
    return RolloutState(Identity(revision, **identity), Progress(phase, **progress), **fields)
