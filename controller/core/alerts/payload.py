"""Alertmanager's webhook notification (version 4) as a pydantic model (pure).

Strict about what ptc uses (labels are strings, timestamps are RFC 3339, ``version`` is "4"),
tolerant of everything else Alertmanager sends or may add (extra keys are ignored).
"""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

# Alertmanager sends at most this many alerts per notification when `max_alerts` is 0
# (unlimited); the body limit bounds it anyway, this keeps one request's work bounded too.
MAX_ALERTS = 1000


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)


class Alert(_Lenient):
    """One alert of a notification."""

    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    # RFC 3339 with a zone, as Alertmanager writes them (a naive time would be ambiguous).
    starts_at: AwareDatetime = Field(alias="startsAt")
    ends_at: AwareDatetime | None = Field(default=None, alias="endsAt")
    generator_url: str = Field(default="", alias="generatorURL")
    fingerprint: str = ""

    @property
    def name(self) -> str:
        """The alert's name (its `alertname` label)."""
        return self.labels.get("alertname", "")


class Notification(_Lenient):
    """A webhook notification: one group's alerts, firing and resolved."""

    version: Literal["4"]
    status: Literal["firing", "resolved"]
    receiver: str = ""
    group_key: str = Field(default="", alias="groupKey")
    external_url: str = Field(default="", alias="externalURL")
    truncated_alerts: int = Field(default=0, alias="truncatedAlerts")
    alerts: list[Alert] = Field(max_length=MAX_ALERTS)


class PayloadError(ValueError):
    """The body is not an Alertmanager webhook notification; the message says why."""


def parse_notification(body: bytes) -> Notification:
    """The notification in `body` (JSON); PayloadError naming the first problems."""
    try:
        return Notification.model_validate_json(body)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False)[:5]:
            where = ".".join(str(p) for p in err["loc"]) or "body"
            if err["type"] == "json_invalid":
                problems.append(f"not valid JSON: {err['ctx'].get('error', err['msg'])}")
            else:
                problems.append(f"{where}: {err['msg']}")
        more = exc.error_count() - len(problems)
        if more > 0:
            problems.append(f"and {more} more")
        raise PayloadError("; ".join(problems)) from None
