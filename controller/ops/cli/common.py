"""What every `ptc` subcommand shares: exit codes, user errors, config loading."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import TextIO

from controller.core.config import LoadedConfig, load_config

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_BAD_INPUT = 2


class UsageError(Exception):
    """Bad input from the user: message printed, exit 2."""


def require_extra(module: str, extra: str, command: str) -> None:
    """UsageError naming the extra to install when `module` (part of ptc[`extra`]) is absent.

    The controller image and a plain ``pip install ptc`` leave out matplotlib (``ptc[report]``)
    and the sandbox (``ptc[sandbox]``); the commands that need them say so instead of failing
    with a traceback.
    """
    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise UsageError(
            f"{command} needs {module}, which this installation does not have ({exc}); "
            f"install it with: pip install 'ptc[{extra}]'"
        ) from None


def _print_problems(problems: Sequence[object], stream: TextIO) -> None:
    for p in problems:
        print(str(p), file=stream)


def _load(path: str, replicas: int | None = None) -> LoadedConfig:
    return load_config(path, replicas)
