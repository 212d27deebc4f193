"""Delivering an alert's command to a rollout: the command annotation, as `ptc abort` writes it.

The command is written to the Service's ``ptc.dev/command`` annotation before the webhook is
answered, so it survives a crash or a failover of the leader between the notification and the
reconcile, and it goes the way every manual command goes (applied once, recorded as
``lastCommand``). Writing it also retires the previous command annotation, which would
otherwise look new again once the alert's id became ``lastCommand``.
"""

from __future__ import annotations

import contextlib

from controller.core.alerts.routing import Delivery, delivery
from controller.core.config.model import Rollout
from controller.core.rollout import Command
from controller.core.state import COMMAND_ANNOTATION, StateError, read_state
from controller.shell.command_annotation import encode_command, parse_command
from controller.shell.kube import Conflict, Kube, ServiceInfo

ATTEMPTS = 3  # precondition conflicts in a row before giving up (the reconciler writes too)


class DeliveryError(Exception):
    """The command could not be written; the notification should be retried."""


async def deliver_command(
    kube: Kube, spec: Rollout, svc: ServiceInfo, command: Command
) -> Delivery:
    """Write `command` as the Service's command annotation unless it is a duplicate or busy.

    `svc` is the Service as last seen. Conflicts (someone wrote the Service meanwhile) are
    retried on a fresh read; any other KubeError propagates.
    """
    for _ in range(ATTEMPTS):
        state = None
        with contextlib.suppress(StateError):  # an unreadable state: the reconciler says so
            state = read_state(svc.annotations)
        pending = parse_command(svc.annotations.get(COMMAND_ANNOTATION))
        verdict = delivery(state, pending, command)
        if verdict is not Delivery.WRITE:
            return verdict
        try:
            await kube.patch_service(
                spec.namespace,
                spec.service,
                resource_version=svc.resource_version,
                annotations={COMMAND_ANNOTATION: encode_command(command)},
            )
        except Conflict:
            svc = await kube.get_service(spec.namespace, spec.service)
            continue
        return Delivery.WRITE
    raise DeliveryError(
        f"Service {spec.namespace}/{spec.service} kept changing during {ATTEMPTS} attempts"
    )
