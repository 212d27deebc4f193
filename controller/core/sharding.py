"""Sharding (pure): which shard a rollout belongs to, and which shards a replica should lead.

With ``--shards S`` every rollout belongs to exactly one of S shards and each shard has its own
Lease (``<lease-name>-shard-<i>``); see :mod:`controller.shell.shards` for the shell that contends
for them. Two rules live here, free of I/O so they can be tested exhaustively:

- :func:`shard_of`: the first 8 bytes of ``sha256("<namespace>/<name>")`` as a big-endian
  integer, modulo S. Stable across processes, Python versions and machines (Python's ``hash()``
  is salted per process, so two replicas would disagree).
- :func:`plan_shards`: given what one replica sees (the live replicas and each shard's live
  holder), which free shards it may take now and which of its own it should hand off. Each
  replica takes at most its fair share, ``ceil(S / live replicas)``, and only while it is among
  the least loaded, so shards spread over replicas; a replica above its fair share, or two or
  more above the least loaded one, hands one off, but only while no shard is free (a free
  shard is a hand-off in flight, or a Lease not read yet). A shard left free for longer than a
  lease duration may be taken by anyone: an unled shard is worse than an uneven spread.

The Leases themselves guarantee that a shard has at most one leader; this plan only decides
who *tries*.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

MAX_SHARDS = 256
# A replica's identity is its key in the members ConfigMap: what a ConfigMap key may be.
MEMBER_KEY = re.compile(r"^[-._a-zA-Z0-9]{1,253}$")


def shard_of(namespace: str, name: str, shards: int) -> int:
    """The shard (0 … shards-1) of the rollout ``namespace/name``."""
    if shards < 1:
        raise ValueError(f"shards must be at least 1, got {shards}")
    digest = hashlib.sha256(f"{namespace}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % shards


def shard_lease_name(lease_name: str, shard: int) -> str:
    """The Lease of one shard: ``<lease-name>-shard-<i>``."""
    return f"{lease_name}-shard-{shard}"


def fair_share(shards: int, replicas: int) -> int:
    """How many shards one of ``replicas`` live replicas leads at most: ceil(S / replicas)."""
    return math.ceil(shards / max(1, replicas))


def _rank(identity: str, shard: int) -> bytes:
    """Rendezvous order: each replica prefers different shards, so fewer attempts collide."""
    return hashlib.sha256(f"{identity}/{shard}".encode()).digest()


@dataclass(frozen=True)
class ShardView:
    """What one replica sees: ``holders[i]`` is shard i's live holder (None: free)."""

    me: str
    holders: tuple[str | None, ...]
    members: frozenset[str]  # live replicas (``me`` counts whether listed or not)
    free_too_long: frozenset[int] = field(default_factory=frozenset)


@dataclass(frozen=True)
class ShardPlan:
    """Shards this replica may acquire now (if still free), and its own to hand off."""

    acquire: frozenset[int]
    release: frozenset[int]
    fair_share: int


def loads(holders: Iterable[str | None], members: Iterable[str]) -> dict[str, int]:
    """Shards led per live replica (0 for a standby)."""
    counts = dict.fromkeys(members, 0)
    for holder in holders:
        if holder is not None and holder in counts:
            counts[holder] += 1
    return counts


def plan_shards(view: ShardView) -> ShardPlan:
    """Which shards to try for and which to hand off; see the module docstring."""
    members = view.members | {view.me}
    shards = len(view.holders)
    target = fair_share(shards, len(members))
    counts = loads(view.holders, members)
    mine, low = counts[view.me], min(counts.values())
    # Free: nobody holds it, or its holder is not a live replica (its Lease still has to expire
    # before the elector takes it; the gate only says we may).
    takeable = sorted(
        (i for i, h in enumerate(view.holders) if h is None or h not in members),
        key=lambda i: _rank(view.me, i),
    )
    room = target - mine if mine == low else 0
    acquire = set(takeable[: max(room, 0)]) | (set(takeable) & view.free_too_long)
    own = sorted(
        (i for i, h in enumerate(view.holders) if h == view.me),
        key=lambda i: _rank(view.me, i),
        reverse=True,  # the least preferred go first
    )
    excess = mine - target
    if excess <= 0 and mine - low >= 2:
        excess = 1
    if takeable:
        # The picture is in flux (a shard handed off and not yet taken, or one we have not
        # read since): counting it as nobody's would make us hand off one too many.
        excess = 0
    return ShardPlan(frozenset(acquire), frozenset(own[: max(excess, 0)]), target)
