"""Who may call the sandbox API, what it counts, and the faults it injects.

- :class:`Rule` / :class:`Authorizer` — bearer tokens mapped to a user and RBAC-like rules
  (apiGroups x resources[/subresource] x verbs, ``*`` wildcards). A token without rules may do
  anything; an unknown token gets 401; a request without a token is ``system:anonymous`` and is
  allowed unless ``anonymous=False``. Denials are 403 Forbidden Status objects worded like RBAC.
- :class:`RequestKey` + counters — every resource request is counted by (verb, group,
  resource[/subresource], user), so tests can assert how many writes a controller made and with
  which identity.
- :class:`Faults` — runtime-changeable error rate (500 or 429 with Retry-After), added latency,
  optionally restricted to some verbs/resources; cutting watches lives on the server.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from controller.sandbox import apierrors as errors

ANONYMOUS = "system:anonymous"


@dataclass(frozen=True)
class Rule:
    """One RBAC PolicyRule: ``resources`` may name subresources as ``deployments/scale``."""

    api_groups: tuple[str, ...]
    resources: tuple[str, ...]
    verbs: tuple[str, ...]

    def allows(self, verb: str, group: str, resource: str) -> bool:
        """Whether this rule grants ``verb`` on ``group``/``resource`` (which may be ``x/sub``)."""
        return (
            ("*" in self.api_groups or group in self.api_groups)
            and ("*" in self.resources or resource in self.resources)
            and ("*" in self.verbs or verb in self.verbs)
        )


def rule(
    groups: str | Iterable[str], resources: str | Iterable[str], verbs: str | Iterable[str]
) -> Rule:
    """Shorthand: ``rule("apps", ["deployments", "deployments/scale"], ["get", "patch"])``."""

    def tup(x: str | Iterable[str]) -> tuple[str, ...]:
        return (x,) if isinstance(x, str) else tuple(x)

    return Rule(tup(groups), tup(resources), tup(verbs))


@dataclass
class Grant:
    """What a bearer token stands for: a user name and its rules (None: allow everything)."""

    user: str
    rules: list[Rule] | None = None


class RequestKey(NamedTuple):
    """How requests are counted."""

    verb: str
    group: str
    resource: str
    user: str


class Authorizer:
    """Bearer-token authentication plus rule-based authorization."""

    def __init__(self, tokens: dict[str, Grant] | None = None, anonymous: bool = True) -> None:
        self.tokens: dict[str, Grant] = dict(tokens or {})
        self.anonymous = anonymous

    def authenticate(self, authorization: str | None) -> Grant:
        """The grant behind an ``Authorization`` header; 401 for unknown tokens."""
        if not authorization:
            if not self.anonymous:
                raise errors.unauthorized()
            return Grant(ANONYMOUS)
        scheme, _, token = authorization.partition(" ")
        grant = self.tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if grant is None:
            raise errors.unauthorized()
        return grant

    @staticmethod
    def authorize(
        grant: Grant,
        verb: str,
        group: str,
        resource: str,
        subresource: str,
        namespace: str,
        name: str | None,
    ) -> None:
        """Raise 403 unless the grant allows ``verb`` on the resource."""
        if grant.rules is None:
            return
        what = f"{resource}/{subresource}" if subresource else resource
        if any(r.allows(verb, group, what) for r in grant.rules):
            return
        raise errors.forbidden(grant.user, verb, group, resource, subresource, namespace, name)


@dataclass
class Faults:
    """Injected failures; all fields may be changed while the server runs."""

    error_rate: float = 0.0
    error_code: int = 500
    retry_after: int = 1
    latency: float = 0.0
    verbs: frozenset[str] | None = None
    resources: frozenset[str] | None = None
    rng: random.Random = field(default_factory=random.Random)

    def applies(self, verb: str, resource: str) -> bool:
        """Whether a request with this verb/resource is subject to the faults."""
        return (self.verbs is None or verb in self.verbs) and (
            self.resources is None or resource in self.resources
        )

    def error(self) -> errors.ApiError | None:
        """The error to answer with this time, if the dice say so."""
        if self.error_rate <= 0 or self.rng.random() >= self.error_rate:
            return None
        if self.error_code == 429:
            return errors.too_many_requests(self.retry_after)
        return errors.internal("injected fault")
