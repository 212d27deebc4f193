"""`ptc promote|abort|pause|resume|retry`: write the command annotation, wait for the ack.

The command is JSON in the Service annotation ``ptc.dev/command`` — ``{"kind", "id", "by"}``,
and ``"detail"`` when an alert gave it — so plain ``kubectl annotate`` and RBAC work unchanged.
The controller applies a command id exactly once and records it in the state
(``lastCommand``); that record is the acknowledgement.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import socket
import uuid
from dataclasses import dataclass
from typing import Any

from controller.core.rollout import Command, CommandKind
from controller.core.state import COMMAND_ANNOTATION, STATE_ANNOTATION, StateError, read_state
from controller.shell.kube import Conflict, Kube, ServiceInfo


def parse_command(raw: str | None) -> Command | None:
    """The command annotation (JSON ``{"kind", "id", "by"[, "detail"]}``); None if malformed."""
    if not raw:
        return None
    try:
        data = json.loads(raw)
        return Command(
            CommandKind(data["kind"]),
            id=str(data["id"]),
            by=str(data.get("by", "?")),
            detail=str(data.get("detail", "")),
        )
    except (ValueError, KeyError, TypeError):
        return None


def encode_command(command: Command) -> str:
    """The command annotation's JSON for `command` (what `parse_command` reads)."""
    data = {"kind": command.kind.value, "id": command.id, "by": command.by}
    if command.detail:
        data["detail"] = command.detail
    return json.dumps(data)


class CommandError(Exception):
    """The command could not be delivered or was not acknowledged."""


class RolloutNotFound(CommandError):
    """No Service in the namespace carries the rollout's state."""


@dataclass(frozen=True)
class CommandResult:
    """What the controller did with the command."""

    applied: bool
    phase: str
    message: str
    service: str


def default_actor() -> str:
    """`user@host`, recorded as who gave the command."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def find_service(services: list[ServiceInfo], rollout: str) -> ServiceInfo:
    """The Service whose state names `rollout` (or, before any state, named like it)."""
    for svc in services:
        try:
            state = read_state(svc.annotations)
        except StateError:
            continue
        if state is not None and state.identity.rollout == rollout:
            return svc
    for svc in services:
        if svc.name == rollout:
            return svc
    known = sorted(svc.name for svc in services if svc.annotations.get(STATE_ANNOTATION))
    raise RolloutNotFound(
        f"no rollout {rollout!r} here: no Service carries its {STATE_ANNOTATION} "
        f"(Services managed by ptc: {', '.join(known) or 'none'})"
    )


async def send_command(
    kind: CommandKind,
    rollout: str,
    namespace: str,
    *,
    kubeconfig: str | None = None,
    timeout: float = 30.0,
    by: str | None = None,
) -> CommandResult:
    """Annotate the rollout's Service with the command and wait until the controller acks it."""
    command_id = f"{kind.value}-{uuid.uuid4().hex[:12]}"
    actor = by or default_actor()
    body = json.dumps({"kind": kind.value, "id": command_id, "by": actor})
    kube = await Kube.connect(kubeconfig)
    try:
        services = kube.informer("services", namespace)
        acked = asyncio.Event()

        def on_change(event_type: str, svc: Any) -> None:
            acked.set()

        services.subscribe(on_change)
        await services.start()
        await services.wait_synced(timeout)
        svc = find_service(services.items(), rollout)
        for _ in range(5):
            try:
                await kube.patch_service(
                    namespace,
                    svc.name,
                    resource_version=svc.resource_version,
                    annotations={COMMAND_ANNOTATION: body},
                )
                break
            except Conflict:
                svc = await kube.get_service(namespace, svc.name)
        else:
            raise CommandError(f"Service {namespace}/{svc.name} kept changing; try again")
        try:
            async with asyncio.timeout(timeout):
                while True:
                    acked.clear()
                    current = services.get(svc.name)
                    result = _acknowledged(current, command_id, actor)
                    if result is not None:
                        return result
                    await acked.wait()
        except TimeoutError:
            raise CommandError(
                f"the command was written to {namespace}/{svc.name} but no controller "
                f"acknowledged it within {timeout:g}s: is ptc running (and the leader)?"
            ) from None
    finally:
        await kube.close()


def _acknowledged(svc: ServiceInfo | None, command_id: str, actor: str) -> CommandResult | None:
    if svc is None:
        return None
    try:
        state = read_state(svc.annotations)
    except StateError:
        return None
    if state is None or state.last_command != command_id:
        return None
    # The command's own record: the latest one made on our behalf.
    ours = [r for r in state.history if r.by == actor]
    last = ours[-1] if ours else (state.history[-1] if state.history else None)
    refused = last is not None and last.decision.endswith("-refused")
    message = last.reason if last is not None else state.message
    return CommandResult(not refused, state.phase.value, message, svc.name)
