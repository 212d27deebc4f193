"""Offline syntax checks of what ptc sends to Prometheus: PromQL with a real parser, RE2 regexes.

Prometheus parses queries with its own PromQL parser and matches regexes with Go's RE2. The
`promql-parser` package (a port of the former) and `google-re2` (the latter's reference
implementation) judge a query or a regex the way Prometheus would, without a Prometheus.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import promql_parser
import re2  # type: ignore[import-untyped]

_RE2_OPTIONS: Any = re2.Options()
_RE2_OPTIONS.log_errors = False  # the reason comes back in the exception; no noise on stderr


@lru_cache(maxsize=8192)
def promql_error(query: str) -> str | None:
    """Why `query` is not valid PromQL, or None when it is."""
    try:
        promql_parser.parse(query)
    except ValueError as exc:
        return str(exc) or "not valid PromQL"
    except Exception as exc:  # a parser bug must not become a crash of the loader
        return f"cannot be parsed: {exc}"
    return None


@lru_cache(maxsize=8192)
def regex_error(pattern: str) -> str | None:
    """Why `pattern` is not an RE2 regex (as Prometheus matches label values), or None."""
    try:
        re2.compile(pattern, _RE2_OPTIONS)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        return reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)
    except Exception as exc:
        return f"cannot be compiled: {exc}"
    return None
