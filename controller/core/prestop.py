"""A container's preStop hook, and how long it holds off SIGTERM (pure).

A pod ptc terminates while it still serves should sleep in preStop until kube-proxy has taken it
out of the Service; this reads how long a hook sleeps (a ``sleep`` action, or an ``exec`` of
``sleep N``, directly or through ``sh -c``) so the preflight can check it (core/termination.py).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PreStopHook:
    """A container's ``lifecycle.preStop`` handler and how long it delays SIGTERM.

    ``seconds`` is known for a ``sleep`` action and for an ``exec`` of ``sleep N`` (directly or
    through ``sh -c``); for any other command or an ``httpGet`` it is None (unknown).
    """

    action: str  # sleep, exec, httpGet, tcpSocket (the first one set)
    seconds: float | None


_SHELLS = frozenset({"sh", "bash", "ash", "dash", "zsh"})
# `sleep 10`, `exec sleep 10`, `sleep 10 && ...`: the sleep that starts a shell script
_SCRIPT_SLEEP = re.compile(r"^\s*(?:exec\s+)?(?:/\S*/)?sleep\s+(\S+)\s*(?:$|[;&|])")
_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def sleep_seconds(argument: str) -> float | None:
    """Seconds of one ``sleep`` operand (``10``, ``0.5``, ``10s``, ``1m``, ``infinity``)."""
    match = re.fullmatch(r"(\d+(?:\.\d*)?|\.\d+|inf|infinity)([smhd]?)", argument.strip())
    if match is None:
        return None
    number = math.inf if match[1].startswith("inf") else float(match[1])
    return number * _UNITS[match[2]]


def _command_sleep(command: Any) -> float | None:
    """How long an exec hook's argv sleeps, when it is a sleep; None otherwise."""
    if not isinstance(command, list) or not all(isinstance(a, str) for a in command):
        return None
    if not command:
        return None
    program = command[0].rsplit("/", 1)[-1]
    if program == "sleep" and len(command) == 2:
        return sleep_seconds(command[1])
    if program in _SHELLS and len(command) == 3 and command[1] == "-c":
        match = _SCRIPT_SLEEP.match(command[2])
        return sleep_seconds(match[1]) if match else None
    return None


def pre_stop_hook(container: Any) -> PreStopHook | None:
    """A container's preStop handler (None when it has none), with its delay when known."""
    if not isinstance(container, dict):
        return None
    pre_stop = (container.get("lifecycle") or {}).get("preStop")
    if not isinstance(pre_stop, dict):
        return None
    sleep = pre_stop.get("sleep")
    if isinstance(sleep, dict):
        seconds = sleep.get("seconds")
        if not isinstance(seconds, int) or isinstance(seconds, bool):
            seconds = -1
        return PreStopHook("sleep", float(seconds) if seconds >= 0 else None)
    exec_ = pre_stop.get("exec")
    if isinstance(exec_, dict):
        return PreStopHook("exec", _command_sleep(exec_.get("command")))
    for action in ("httpGet", "tcpSocket"):
        if isinstance(pre_stop.get(action), dict):
            return PreStopHook(action, None)
    return None
