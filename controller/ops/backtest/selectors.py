"""Which series a backtest reads: the pods that really served, bound into the query templates.

By default the templates' variables come from the rollout's Deployment names, exactly as the
runner derives them (`controller.core.analysis.templates.QueryContext`). A past incident may have
run other pods (another canary Deployment, pods named otherwise), so each side can be bound
to what its pods really were:

* a **pod regex** (``zai-proxy-v3-.*``) replaces ``{{ canary_pod_regex }}`` /
  ``{{ stable_pod_regex }}`` and the side's ``{{ pod_regex }}`` (and so the default
  selectors, and ``{{ service_pod_regex }}``, built from both);
* **label matchers** (``pod=~"zai-proxy-v3-.*",namespace="devpod"``) replace the side's
  ``{{ selector }}`` as a whole.

Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta

from controller.core.analysis.templates import QueryContext, render
from controller.core.config.model import Rollout, Side

# One PromQL label matcher: name, operator, double-quoted value (escapes allowed).
_MATCHER = r'\s*[A-Za-z_][A-Za-z0-9_]*\s*(?:=~|!~|!=|=)\s*"(?:[^"\\]|\\.)*"\s*'
_MATCHERS = re.compile(rf"^\{{?{_MATCHER}(?:,{_MATCHER})*,?\s*\}}?$")


class SelectorError(ValueError):
    """A side was bound to something that is neither a pod regex nor label matchers."""


@dataclass(frozen=True)
class SideBinding:
    """What one side's series are: a pod-name regex, label matchers, or (neither) derived."""

    pod_regex: str | None = None  # as it goes between PromQL's double quotes (escaped)
    selector: str | None = None  # PromQL label matchers, without braces
    text: str = ""  # as the user gave it, for the output

    @property
    def bound(self) -> bool:
        """Whether the user bound this side at all."""
        return self.pod_regex is not None or self.selector is not None


@dataclass(frozen=True)
class Bindings:
    """The canary, stable and (for the capacity gate's demand) service bindings."""

    canary: SideBinding = field(default_factory=SideBinding)
    stable: SideBinding = field(default_factory=SideBinding)
    service: SideBinding = field(default_factory=SideBinding)

    def for_side(self, side: Side) -> SideBinding:
        """The binding of one side."""
        return {Side.CANARY: self.canary, Side.STABLE: self.stable, Side.SERVICE: self.service}[
            side
        ]

    @property
    def any(self) -> bool:
        """Whether any side is bound (else the rollout's Deployments decide)."""
        return self.canary.bound or self.stable.bound or self.service.bound


def _promql_string(text: str) -> str:
    """`text` escaped to sit between PromQL's double quotes."""
    return text.replace("\\", "\\\\").replace('"', '\\"')


def parse_side(text: str, flag: str) -> SideBinding:
    """``--canary``/``--stable``/``--service`` as given: label matchers or a pod regex."""
    raw = text.strip()
    if not raw:
        raise SelectorError(f"{flag}: empty; give a pod regex or label matchers")
    if _MATCHERS.match(raw):
        return SideBinding(selector=raw.strip("{} ").rstrip(","), text=raw)
    if "=" in raw or '"' in raw or "{" in raw:
        raise SelectorError(
            f'{flag} {raw!r}: not label matchers (label="value", label=~"regex", ...) '
            "nor a pod regex"
        )
    try:
        re.compile(raw)
    except re.error as exc:
        raise SelectorError(f"{flag} {raw!r}: not a valid regex: {exc}") from None
    return SideBinding(pod_regex=_promql_string(raw), text=raw)


class BoundContext(QueryContext):
    """The runner's `QueryContext` with some sides bound to other pods or matchers."""

    def __init__(self, rollout: Rollout, window: timedelta, bindings: Bindings) -> None:
        super().__init__(rollout, window)
        self.bindings = bindings

    def variables(self, side: Side) -> dict[str, str]:
        """The runner's variables for `side`, with the bound regexes and selector in place."""
        values = super().variables(side)
        if not self.bindings.any:
            return values
        canary = self.bindings.canary.pod_regex or values["canary_pod_regex"]
        stable = self.bindings.stable.pod_regex or values["stable_pod_regex"]
        service = self.bindings.service.pod_regex or f"({stable}|{canary})"
        values.update(
            canary_pod_regex=canary,
            stable_pod_regex=stable,
            service_pod_regex=service,
            pod_regex={Side.CANARY: canary, Side.STABLE: stable, Side.SERVICE: service}[side],
        )
        selector = self.bindings.for_side(side).selector
        if selector is None:
            template = self.rollout.analysis.selectors.for_side(side)
            selector = render(template, values | {"selector": ""})
        values["selector"] = selector
        return values


__all__ = ["Bindings", "BoundContext", "SelectorError", "SideBinding", "parse_side"]
