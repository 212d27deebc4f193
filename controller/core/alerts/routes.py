"""A rollout's ``alerts:`` routes compiled: variables filled in, matchers parsed (pure)."""

from __future__ import annotations

from collections.abc import Mapping

from controller.core.alerts.matchers import Matcher, parse_matcher
from controller.core.analysis import templates
from controller.core.config.model import AlertAction, AlertRoute, Rollout

# The template variables a matcher value may use: the rollout's (templates.ROLLOUT_VARIABLES
# but the window), spelled out because this module is imported while templates initialises.
ALERT_VARIABLES = (
    "namespace",
    "service",
    "stable_deployment",
    "canary_deployment",
    "stable_version",
    "canary_version",
    "stable_pod_regex",
    "canary_pod_regex",
    "service_pod_regex",
)


def variables(rollout: Rollout) -> dict[str, str]:
    """The values of ALERT_VARIABLES for `rollout` (as queries see them)."""
    stable, canary = rollout.stable, rollout.canary
    stable_regex = templates.pod_regex(stable.deployment)
    canary_regex = templates.pod_regex(canary.deployment)
    return {
        "namespace": rollout.namespace,
        "service": rollout.service,
        "stable_deployment": stable.deployment,
        "canary_deployment": canary.deployment,
        "stable_version": stable.version or "",
        "canary_version": canary.version,
        "stable_pod_regex": stable_regex,
        "canary_pod_regex": canary_regex,
        "service_pod_regex": f"({stable_regex}|{canary_regex})",
    }


def compile_route(route: AlertRoute, rollout: Rollout) -> tuple[Matcher, ...]:
    """The route's matchers with the rollout's variables filled in.

    MatcherError for a matcher that does not parse (or a bad regex); TemplateError for an
    unknown variable. A validated config raises neither.
    """
    values = variables(rollout)
    out = []
    for text in route.matchers:
        unknown = [v for v in templates.variables_in(text) if v not in values]
        if unknown:
            raise templates.TemplateError(
                f"unknown template variable {{{{ {unknown[0]} }}}} "
                f"(known here: {', '.join(ALERT_VARIABLES)})"
            )
        out.append(parse_matcher(templates.render(text, values)))
    return tuple(out)


CompiledRoutes = tuple[tuple[tuple[Matcher, ...], AlertAction], ...]


def compile_routes(rollout: Rollout) -> CompiledRoutes:
    """Every route of the rollout, compiled (see `compile_route`)."""
    return tuple((compile_route(route, rollout), route.action) for route in rollout.alerts)


def strongest_action(routes: CompiledRoutes, labels: Mapping[str, str]) -> AlertAction | None:
    """The strongest action among the routes whose matchers all hold for `labels`, or None."""
    found: AlertAction | None = None
    for matchers, action in routes:
        if all(m.matches(labels) for m in matchers):
            if action is AlertAction.ROLLBACK:
                return action
            found = action
    return found
