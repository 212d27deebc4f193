"""Container lifecycle hooks: the API server's validation and the kubelet's preStop timing.

Validation follows ``validateLifecycle`` / ``validateHandler`` in ``pkg/apis/core/validation``
(Kubernetes >= 1.33, where a zero-second sleep is allowed): each of ``postStart`` / ``preStop``
names exactly one of ``exec``, ``httpGet``, ``tcpSocket``, ``sleep``; ``exec.command`` is not
empty; ``sleep.seconds`` lies in 0..terminationGracePeriodSeconds.
"""

from __future__ import annotations

from typing import Any, TypeGuard

from controller.core.prestop import pre_stop_hook
from controller.sandbox.apierrors import FieldError

Obj = dict[str, Any]

HANDLERS = ("exec", "httpGet", "tcpSocket", "sleep")


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _validate_handler(handler: Any, grace: int | None, path: str) -> list[FieldError]:
    if not isinstance(handler, dict):
        return [FieldError(path, "FieldValueInvalid", "must be an object", handler)]
    errs: list[FieldError] = []
    found = 0
    for kind in HANDLERS:
        action = handler.get(kind)
        if action is None:
            continue
        if found:
            errs.append(
                FieldError(
                    f"{path}.{kind}",
                    "FieldValueForbidden",
                    "may not specify more than 1 handler type",
                )
            )
            continue
        found += 1
        errs += _validate_action(kind, action, grace, f"{path}.{kind}")
    if not found:
        errs.append(FieldError(path, "FieldValueRequired", "must specify a handler type"))
    return errs


def _validate_action(kind: str, action: Any, grace: int | None, path: str) -> list[FieldError]:
    if not isinstance(action, dict):
        return [FieldError(path, "FieldValueInvalid", "must be an object", action)]
    if kind == "exec":
        command = action.get("command")
        if not isinstance(command, list) or not command:
            return [FieldError(f"{path}.command", "FieldValueRequired", "")]
        if not all(isinstance(a, str) for a in command):
            return [FieldError(f"{path}.command", "FieldValueInvalid", "must be strings", command)]
    elif kind == "sleep":
        seconds = action.get("seconds")
        # A grace period that is itself invalid is reported on its own field, not here.
        if not _is_int(seconds) or seconds < 0 or (grace is not None and seconds > grace):
            limit = 30 if grace is None else grace
            return [
                FieldError(
                    path,
                    "FieldValueInvalid",
                    f"must be non-negative and less than terminationGracePeriodSeconds ({limit})",
                    seconds,
                )
            ]
    elif kind in ("httpGet", "tcpSocket"):
        port = action.get("port")
        if port is None or port == "":
            return [FieldError(f"{path}.port", "FieldValueRequired", "")]
        if _is_int(port) and not 1 <= port <= 65535:
            return [
                FieldError(
                    f"{path}.port",
                    "FieldValueInvalid",
                    "must be between 1 and 65535, inclusive",
                    port,
                )
            ]
    return []


def validate_lifecycle(container: Obj, grace: Any, path: str) -> list[FieldError]:
    """Errors in one container's ``lifecycle`` (``path`` is the container's field path)."""
    lifecycle = container.get("lifecycle")
    if lifecycle is None:
        return []
    if not isinstance(lifecycle, dict):
        return [
            FieldError(f"{path}.lifecycle", "FieldValueInvalid", "must be an object", lifecycle)
        ]
    errs: list[FieldError] = []
    for hook in ("postStart", "preStop"):
        if lifecycle.get(hook) is not None:
            errs += _validate_handler(
                lifecycle[hook], grace if _is_int(grace) else None, f"{path}.lifecycle.{hook}"
            )
    return errs


def pre_stop_delay(pod: Obj) -> float:
    """Seconds the serving container's preStop hook holds off its SIGTERM (0: none, or instant).

    The serving container is the first one declaring a port (else the first one). A ``sleep``
    action or an ``exec`` of ``sleep N`` waits; the sandbox's containers have no other programs,
    so any other hook returns at once.
    """
    spec = pod.get("spec") or {}
    containers = [c for c in spec.get("containers") or [] if isinstance(c, dict)]
    serving = next((c for c in containers if c.get("ports")), containers[0] if containers else {})
    hook = pre_stop_hook(serving)
    return hook.seconds if hook is not None and hook.seconds is not None else 0.0
