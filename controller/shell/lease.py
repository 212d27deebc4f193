"""The Lease an elector contends for: the calls it makes on it, and the election timings.

:class:`LeaseApi` is what :class:`~controller.shell.leader.LeaderElector` (and the shard
manager) need of the Kubernetes API (:class:`~controller.shell.kube.Kube` provides it);
:class:`LeaderSettings` names the Lease and checks the timings against each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from controller.shell.kube import LeaseInfo

# A released Lease says it lasts 1 s (the API minimum); its empty holder lets anyone take it.
RELEASED_DURATION_SECONDS = 1


class LeaseApi(Protocol):
    """The three Lease calls the elector makes (:class:`~controller.shell.kube.Kube` provides
    them)."""

    async def get_lease(self, namespace: str, name: str) -> LeaseInfo:
        """GET the Lease; NotFound when absent."""
        ...

    async def create_lease(
        self,
        namespace: str,
        name: str,
        *,
        holder: str | None,
        duration_seconds: int | None,
        acquire_time: datetime | None,
        renew_time: datetime | None,
        transitions: int = 0,
    ) -> LeaseInfo:
        """CREATE the Lease; Conflict when it exists."""
        ...

    async def update_lease(
        self,
        namespace: str,
        name: str,
        *,
        resource_version: str,
        holder: str | None,
        duration_seconds: int | None,
        acquire_time: datetime | None,
        renew_time: datetime | None,
        transitions: int,
    ) -> LeaseInfo:
        """PUT the Lease's spec if it is still at ``resource_version``; Conflict otherwise."""
        ...


# One Lease's timings (lease duration, renew deadline, retry period): client-go's defaults.
LEASE_TIMINGS = (timedelta(seconds=15), timedelta(seconds=10), timedelta(seconds=2))


@dataclass(frozen=True, kw_only=True)
class LeaderSettings:
    """Which Lease to contend for, as whom, and the election timings.

    ``lease_duration``: how long followers wait after the record last changed before taking it
    (published as ``spec.leaseDurationSeconds``, so whole seconds). ``renew_deadline``: how
    long after its last successful renewal the leader still acts. ``retry_period``: the time
    between attempts. ``retry_period < renew_deadline < lease_duration`` is required; the gap
    between the last two is the safety margin for clock rate differences.
    """

    namespace: str
    name: str = "ptc-leader"
    identity: str
    lease_duration: timedelta = LEASE_TIMINGS[0]
    renew_deadline: timedelta = LEASE_TIMINGS[1]
    retry_period: timedelta = LEASE_TIMINGS[2]

    def __post_init__(self) -> None:
        for label, text in (
            ("namespace", self.namespace),
            ("name", self.name),
            ("identity", self.identity),
        ):
            if not text or not text.strip():
                raise ValueError(f"leader election: {label} must not be empty")
        for label, value in (
            ("lease_duration", self.lease_duration),
            ("renew_deadline", self.renew_deadline),
            ("retry_period", self.retry_period),
        ):
            if value <= timedelta(0):
                raise ValueError(f"leader election: {label} must be positive, got {value}")
        if self.lease_duration % timedelta(seconds=1):
            raise ValueError(
                "leader election: lease_duration must be whole seconds (the Lease stores "
                f"leaseDurationSeconds as an integer), got {self.lease_duration}"
            )
        if not self.retry_period < self.renew_deadline < self.lease_duration:
            raise ValueError(
                "leader election: retry_period < renew_deadline < lease_duration is required "
                f"(got {self.retry_period}, {self.renew_deadline}, {self.lease_duration}); "
                "the leader must retry several times before its deadline, and stop acting "
                "before followers may take the lease"
            )

    @property
    def lease_duration_seconds(self) -> int:
        """``lease_duration`` as the Lease's ``spec.leaseDurationSeconds``."""
        return int(self.lease_duration.total_seconds())
