"""What `ptc run` is told (flags, chart values) and the election settings that follow from it."""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from controller.core.config.model import Rollout
from controller.shell.lease import LEASE_TIMINGS, LeaderSettings
from controller.shell.shards import ShardSettings


@dataclass
class DaemonOptions:
    """How `ptc run` runs."""

    kubeconfig: str | None = None
    listen_host: str = "0.0.0.0"
    listen_port: int = 8080
    identity: str = field(default_factory=socket.gethostname)
    namespaces: tuple[str, ...] = ()  # only these (default: every namespace a rollout names)
    config_source: str = ""
    leader_elect: bool = True
    leader_namespace: str | None = None  # default: $POD_NAMESPACE, else the first rollout's
    lease_name: str = "ptc-leader"
    lease_duration: timedelta = LEASE_TIMINGS[0]
    renew_deadline: timedelta = LEASE_TIMINGS[1]
    retry_period: timedelta = LEASE_TIMINGS[2]
    alerts_token_file: str | None = None  # the Alertmanager receiver's bearer token (off: None)
    shards: int = 0  # 0: one Lease for all rollouts; S: one Lease per shard (README "Sharding")

    def lease_namespace(self, rollouts: Sequence[Rollout]) -> str:
        """Where the Lease(s) live: the option, else $POD_NAMESPACE, else the first rollout's."""
        return (
            self.leader_namespace
            or os.environ.get("POD_NAMESPACE")
            or (rollouts[0].namespace if rollouts else "default")
        )

    def leader_settings(self, namespace: str) -> LeaderSettings:
        """The one Lease all rollouts share (unsharded)."""
        return LeaderSettings(
            namespace=namespace,
            name=self.lease_name,
            identity=self.identity,
            lease_duration=self.lease_duration,
            renew_deadline=self.renew_deadline,
            retry_period=self.retry_period,
        )

    def shard_settings(self, namespace: str) -> ShardSettings:
        """One Lease per shard (`shards` > 0)."""
        return ShardSettings(
            namespace=namespace,
            lease_name=self.lease_name,
            shards=self.shards,
            identity=self.identity,
            lease_duration=self.lease_duration,
            renew_deadline=self.renew_deadline,
            retry_period=self.retry_period,
        )
