"""Writing data as YAML that reads back the same under YAML 1.2 (our reader) and 1.1 (PyYAML).

PyYAML's SafeDumper quotes a string only when a YAML 1.1 reader would take it for something
else (``yes``, ``010``, ``2026-01-01``). A YAML 1.2 reader — ``controller.core.config.yamlread``,
kubectl, Go's yaml.v3 — also reads ``0o17`` as a number, which 1.1 does not, so such strings
are quoted too. Block style, keys in the order given, Unicode as written.
"""

from __future__ import annotations

import re
from typing import Any

import yaml


class _Dumper(yaml.SafeDumper):
    """SafeDumper that also quotes strings YAML 1.2 would read as numbers."""


# Implicit resolvers decide which plain scalars need quotes. These are the numbers of YAML
# 1.2's core schema (as yamlread resolves them) that 1.1 reads as strings: `0o17`, `1e3`.
_Dumper.add_implicit_resolver("tag:yaml.org,2002:int", re.compile(r"^0o[0-7]+$"), list("0"))
_Dumper.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$"),
    list("-+.0123456789"),
)


def dump_yaml(data: Any) -> str:
    """`data` (JSON-like: dicts, lists, str, numbers, bools, None) as block-style YAML."""
    text: str = yaml.dump(
        data,
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=1_000_000,  # no folding: a long message stays one line, as in the JSON output
    )
    return text
