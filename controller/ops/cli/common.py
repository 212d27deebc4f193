"""What every `ptc` subcommand shares: exit codes, user errors, config loading."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TextIO

from controller.core.config import LoadedConfig, load_config

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_BAD_INPUT = 2


class UsageError(Exception):
    """Bad input from the user: message printed, exit 2."""


def _print_problems(problems: Sequence[object], stream: TextIO) -> None:
    for p in problems:
        print(str(p), file=stream)


def _load(path: str, replicas: int | None = None) -> LoadedConfig:
    return load_config(path, replicas)
