"""Shard assignment (pure): a stable hash, and a plan that spreads shards over live replicas."""

from __future__ import annotations

import random
import subprocess
import sys

from hypothesis import given, settings
from hypothesis import strategies as st

from controller.core.sharding import (
    ShardView,
    fair_share,
    loads,
    plan_shards,
    shard_lease_name,
    shard_of,
)


def test_shard_of_is_the_documented_sha256_rule() -> None:
    # sha256("devpod/zai-proxy")[:8] as a big-endian integer, modulo S: pinned, so a change of
    # rule (which would move every rollout to another shard on upgrade) is caught.
    import hashlib

    digest = hashlib.sha256(b"devpod/zai-proxy").digest()
    expected = int.from_bytes(digest[:8], "big")
    assert [shard_of("devpod", "zai-proxy", s) for s in (1, 4, 6, 7)] == [
        expected % s for s in (1, 4, 6, 7)
    ]
    assert shard_lease_name("ptc-leader", 3) == "ptc-leader-shard-3"


def test_shard_of_is_the_same_in_another_process() -> None:
    # Python's hash() is salted per process: the rule must not depend on it.
    names = [("team-a", "web"), ("team-b", "api"), ("default", "zai-proxy")]
    here = [shard_of(ns, n, 6) for ns, n in names]
    code = (
        "from controller.core.sharding import shard_of; "
        f"print([shard_of(ns, n, 6) for ns, n in {names!r}])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345", "PATH": ""} | _pythonpath(),
    )
    assert out.stdout.strip() == str(here)


def _pythonpath() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k == "PYTHONPATH"}


@given(st.lists(st.text(min_size=1, max_size=20), min_size=50, max_size=50, unique=True))
def test_rollouts_spread_over_shards(names: list[str]) -> None:
    shards = {shard_of("ns", n, 4) for n in names}
    assert shards <= {0, 1, 2, 3}
    assert len(shards) >= 2  # 50 names on one of 4 shards: (1/4)^49, never


def _converge(
    members: list[str], shards: int, rng: random.Random, start: list[str | None] | None = None
) -> tuple[list[str | None], int]:
    """Replicas act in random order on fresh views, with Lease semantics (a shard is taken
    only when free; a hand-off frees it) until nobody wants to change anything."""
    holders: list[str | None] = list(start) if start is not None else [None] * shards
    live = frozenset(members)
    for rounds in range(200):
        changed = False
        for me in rng.sample(members, len(members)):
            plan = plan_shards(ShardView(me, tuple(holders), live))
            for i in sorted(plan.release):
                assert holders[i] == me  # only one's own shards are handed off
                holders[i] = None
                changed = True
            for i in sorted(plan.acquire):
                if holders[i] is None or holders[i] not in live:  # the Lease: only when free
                    holders[i] = me
                    changed = True
        if not changed:
            return holders, rounds
    raise AssertionError(f"no fixed point after 200 rounds: {holders}")


@settings(max_examples=150, deadline=None)
@given(
    replicas=st.integers(1, 6),
    shards=st.integers(1, 24),
    seed=st.integers(0, 2**32),
)
def test_every_shard_led_and_balanced_within_one(replicas: int, shards: int, seed: int) -> None:
    rng = random.Random(seed)
    members = [f"ptc-{i}" for i in range(replicas)]
    holders, _ = _converge(members, shards, rng)
    assert all(h in members for h in holders), holders  # every shard has a live leader
    counts = loads(holders, members)
    assert max(counts.values()) - min(counts.values()) <= 1, counts
    assert max(counts.values()) <= fair_share(shards, replicas)
    # Stable: the converged world, seen again, asks for nothing.
    for me in members:
        plan = plan_shards(ShardView(me, tuple(holders), frozenset(members)))
        assert not plan.release
        assert not [i for i in plan.acquire if holders[i] is None]


@settings(max_examples=100, deadline=None)
@given(replicas=st.integers(2, 6), shards=st.integers(1, 24), seed=st.integers(0, 2**32))
def test_a_dead_replicas_shards_move_to_the_others(replicas: int, shards: int, seed: int) -> None:
    rng = random.Random(seed)
    members = [f"ptc-{i}" for i in range(replicas)]
    holders, _ = _converge(members, shards, rng)
    dead = rng.choice(members)
    survivors = [m for m in members if m != dead]
    # The dead one still names its shards until their Leases expire; it is no longer live.
    holders, _ = _converge(survivors, shards, rng, holders)
    assert all(h in survivors for h in holders), holders
    counts = loads(holders, survivors)
    assert max(counts.values()) - min(counts.values()) <= 1, counts


@settings(max_examples=100, deadline=None)
@given(replicas=st.integers(2, 6), shards=st.integers(1, 24), seed=st.integers(0, 2**32))
def test_a_new_replica_gets_its_share(replicas: int, shards: int, seed: int) -> None:
    # One replica started first and took everything; the others join later.
    rng = random.Random(seed)
    members = [f"ptc-{i}" for i in range(replicas)]
    first, _ = _converge(members[:1], shards, rng)
    assert first == [members[0]] * shards
    holders, _ = _converge(members, shards, rng, first)
    counts = loads(holders, members)
    assert max(counts.values()) - min(counts.values()) <= 1, counts
    assert all(h in members for h in holders)


def test_a_replica_above_its_share_hands_off_its_least_preferred() -> None:
    holders: tuple[str | None, ...] = ("a",) * 6
    plan = plan_shards(ShardView("a", holders, frozenset({"a", "b", "c"})))
    assert plan.fair_share == 2 and len(plan.release) == 4 and not plan.acquire
    # b is a standby: among the least loaded, room for 2, but nothing is free yet
    assert plan_shards(ShardView("b", holders, frozenset({"a", "b", "c"}))).acquire == frozenset()


def test_only_the_least_loaded_take_a_free_shard() -> None:
    holders = ("a", "a", None, "b")
    members = frozenset({"a", "b", "c"})
    assert plan_shards(ShardView("c", holders, members)).acquire == {2}
    assert plan_shards(ShardView("b", holders, members)).acquire == frozenset()
    # ... unless it has been free longer than a lease duration: then anyone may
    late = ShardView("a", holders, members, free_too_long=frozenset({2}))
    assert plan_shards(late).acquire == {2}
