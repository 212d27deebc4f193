"""`ptc run`'s Lease timings: client-go's for one Lease, longer when the rollouts are sharded."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from controller.ops.cli import main
from controller.shell.shards import LEASE_TIMINGS, SHARDED_LEASE_TIMINGS, lease_timings

S = timedelta(seconds=1)
REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("shards", "given", "want"),
    [
        (0, (None, None, None), (15 * S, 10 * S, 2 * S)),  # one Lease: client-go's
        (1, (None, None, None), (15 * S, 10 * S, 2 * S)),  # one shard is one Lease
        (4, (None, None, None), (30 * S, 20 * S, 2 * S)),
        # a timing set by hand keeps its meaning; the rest are the single Lease's
        (4, (12 * S, None, None), (12 * S, 10 * S, 2 * S)),
        (4, (None, None, 1 * S), (15 * S, 10 * S, 1 * S)),
        (0, (40 * S, 30 * S, 5 * S), (40 * S, 30 * S, 5 * S)),
    ],
)
def test_lease_timings(
    shards: int,
    given: tuple[timedelta | None, timedelta | None, timedelta | None],
    want: tuple[timedelta, timedelta, timedelta],
) -> None:
    assert lease_timings(shards, *given) == want


def test_both_defaults_leave_room_between_renew_deadline_and_lease() -> None:
    # the fence: a leader stops at its renew deadline, before anyone may take the Lease
    for lease, renew, retry in (LEASE_TIMINGS, SHARDED_LEASE_TIMINGS):
        assert retry < renew < lease and lease - renew >= 5 * S


class _Stop(BaseException):  # past the CLI's last-resort handler of Exception
    pass


def _started_with(monkeypatch: pytest.MonkeyPatch, *flags: str) -> Any:
    """The DaemonOptions `ptc run` would start the controller with."""
    seen: list[Any] = []

    class FakeController:
        def __init__(self, config: object, options: object) -> None:
            seen.append(options)
            raise _Stop

    monkeypatch.setattr("controller.shell.daemon.Controller", FakeController)
    with pytest.raises(_Stop):
        main(["run", "--config", str(REPO / "config" / "zai-proxy.yaml"), *flags])
    return seen[0]


def test_ptc_run_uses_the_sharded_timings_only_with_shards(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    one = _started_with(monkeypatch)
    assert (one.lease_duration, one.renew_deadline, one.retry_period) == LEASE_TIMINGS
    sharded = _started_with(monkeypatch, "--shards", "4", "--identity", "r0")
    assert (sharded.lease_duration, sharded.renew_deadline) == (30 * S, 20 * S)
    by_hand = _started_with(
        monkeypatch, "--shards", "4", "--identity", "r0", "--renew-deadline", "8s"
    )
    assert (by_hand.lease_duration, by_hand.renew_deadline) == (15 * S, 8 * S)
