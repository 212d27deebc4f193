"""A whole config file: how to reach Prometheus, the defaults rollouts inherit, the rollouts."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field

from controller.core.config.model.base import Model, PositiveDuration
from controller.core.config.model.rollout import Rollout, RolloutDefaults


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise ValueError(f"expected an http(s) URL with a valid port, got {value!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an http:// or https:// URL with a host, got {value!r}")
    return value


class PrometheusSettings(Model):
    """How to reach Prometheus."""

    url: Annotated[str, AfterValidator(_http_url)] = "http://localhost:9090"
    timeout: PositiveDuration = timedelta(seconds=10)
    bearer_token_file: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    ca_file: str | None = None


class Config(Model):
    """A whole config file."""

    prometheus: PrometheusSettings = Field(default_factory=PrometheusSettings)
    defaults: RolloutDefaults = Field(default_factory=RolloutDefaults)
    rollouts: list[Rollout] = Field(
        description="required: an empty file is a mistake; `rollouts: []` says none on purpose"
    )

    def rollout(self, name: str) -> Rollout:
        """The rollout called `name`; KeyError naming the ones there are."""
        for r in self.rollouts:
            if r.name == name:
                return r
        known = ", ".join(r.name for r in self.rollouts) or "none"
        raise KeyError(f"no rollout named {name!r} (rollouts in this file: {known})")
