"""What the semantic checks find: a located message with a severity."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

Loc = tuple[str | int, ...]


class Severity(StrEnum):
    """Errors stop the config from being used; warnings are printed and the config is used."""

    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True)
class Finding:
    """One problem found in a validated model, located by its YAML key path."""

    loc: Loc
    message: str
    severity: Severity = Severity.ERROR
