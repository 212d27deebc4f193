"""Duration strings (``30s``, ``5m``, ``1h30m``, ``500ms``) <-> ``timedelta``."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import ROUND_HALF_EVEN, Decimal

# Microseconds per unit: exact decimal arithmetic, so `1h0.001s` is not off by a float ulp.
_UNITS: dict[str, int] = {
    "ms": 1_000,
    "s": 1_000_000,
    "m": 60_000_000,
    "h": 3_600_000_000,
    "d": 86_400_000_000,
}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_WHOLE = re.compile(r"^(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+$")

DURATION_PATTERN = r"^(0|([0-9]+(\.[0-9]+)?(ms|s|m|h|d))+)$"
DURATION_HELP = "a duration string such as 30s, 5m, 1h30m or 24h"


def parse_duration(text: str) -> timedelta:
    """Parse a duration string; raise ValueError saying what is expected."""
    if not isinstance(text, str):
        raise ValueError(f"expected {DURATION_HELP}, got {type(text).__name__} {text!r}")
    compact = text.strip()
    if compact == "0":
        return timedelta(0)
    if not _WHOLE.match(compact):
        raise ValueError(f"expected {DURATION_HELP}, got {text!r}")
    micros = sum((Decimal(n) * _UNITS[u] for n, u in _PART.findall(compact)), Decimal(0))
    try:
        return timedelta(microseconds=int(micros.to_integral_value(ROUND_HALF_EVEN)))
    except OverflowError:
        raise ValueError(f"duration {text!r} is too long (at most {timedelta.max.days}d)") from None


def format_duration(delta: timedelta) -> str:
    """Render a timedelta in the shortest form the parser accepts back, to the millisecond.

    Negative values render with a leading ``-`` for display only; the parser accepts none.
    """
    micros = delta // timedelta(microseconds=1)  # exact, unlike total_seconds() on long spans
    sign = "-" if micros < 0 else ""
    total_ms = (abs(micros) + 500) // 1000
    if total_ms == 0:
        return "0s"
    parts: list[str] = []
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
        count, total_ms = divmod(total_ms, size)
        if count:
            parts.append(f"{count}{unit}")
    return sign + "".join(parts)
