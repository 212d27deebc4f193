"""The config model's building blocks: field types (durations, names, labels), the base model.

Durations are strings in YAML (``30s``) and ``timedelta`` here; name patterns follow the
Kubernetes kind they name. Every model derives from :class:`Model`: camelCase keys in YAML,
unknown keys rejected, immutable.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
)
from pydantic.alias_generators import to_camel

from controller.core.durations import (
    DURATION_HELP,
    DURATION_PATTERN,
    format_duration,
    parse_duration,
)

MAX_DURATION = timedelta(days=3650)  # so holds and bakes can be added up without overflow


def _duration_in(value: object) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, str):
        parsed = parse_duration(value)
        if parsed > MAX_DURATION:
            raise ValueError(f"duration {value!r} is too long (at most 3650d)")
        return parsed
    raise ValueError(f"expected {DURATION_HELP}, got {type(value).__name__} {value!r}")


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("must be longer than 0s")
    return value


Duration = Annotated[
    timedelta,
    BeforeValidator(_duration_in),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema({"type": "string", "pattern": DURATION_PATTERN, "description": DURATION_HELP}),
]
PositiveDuration = Annotated[Duration, AfterValidator(_positive)]

# YAML's types as the schema and Kubernetes take them: `true` is no number, "20" no integer.
INT32_MAX = 2**31 - 1
Number = Annotated[float, Field(strict=True)]
Int32 = Annotated[int, Field(strict=True, le=INT32_MAX)]
Flag = Annotated[bool, Field(strict=True)]


_PERCENT = r"(100|[1-9]?[0-9])%"


def _int_or_percent_in(value: object) -> int | str:
    if isinstance(value, bool):
        raise ValueError(
            f"expected a non-negative integer or a percentage like '25%', got {value!r}"
        )
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"expected a non-negative integer, got {value}")
        if value > INT32_MAX:
            raise ValueError(f"expected an integer at most {INT32_MAX}, got {value}")
        return value
    if isinstance(value, str) and re.fullmatch(_PERCENT, value):
        return value
    raise ValueError(f"expected a non-negative integer or a percentage like '25%', got {value!r}")


IntOrPercent = Annotated[
    int | str,
    BeforeValidator(_int_or_percent_in),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 0, "maximum": INT32_MAX},
                {"type": "string", "pattern": f"^{_PERCENT}$"},
            ]
        }
    ),
]

# Kubernetes names, per kind: namespaces are DNS-1123 labels, Services DNS-1035 labels (a letter
# first), Deployments DNS-1123 subdomains (dot-separated labels); and label values.
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
DNS_1035_LABEL = r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
LABEL_VALUE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$"
LABEL_KEY = (
    r"^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)

Name = Annotated[str, Field(pattern=DNS_SUBDOMAIN, max_length=253)]
ServiceName = Annotated[str, Field(pattern=DNS_1035_LABEL, max_length=63)]
Namespace = Annotated[str, Field(pattern=DNS_LABEL, max_length=63)]
# Prometheus's classic names (what a query can use without quoting).
METRIC_NAME = r"^[a-zA-Z_:][a-zA-Z0-9_:]*$"
PROM_LABEL = r"^[a-zA-Z_][a-zA-Z0-9_]*$"
MetricName = Annotated[str, Field(pattern=METRIC_NAME)]
UrlPath = Annotated[str, Field(pattern=r"^/")]
LabelValue = Annotated[str, Field(pattern=LABEL_VALUE, max_length=63)]
LabelKey = Annotated[str, Field(pattern=LABEL_KEY)]
Selector = dict[LabelKey, LabelValue]


class Model(BaseModel):
    """Base: camelCase keys in YAML, unknown keys rejected, immutable."""

    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        alias_generator=to_camel,
        frozen=True,
        validate_default=True,
        allow_inf_nan=False,
    )
