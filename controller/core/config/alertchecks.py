"""A rollout's ``alerts:`` routes: matcher syntax, regexes, template variables, breadth."""

from __future__ import annotations

import difflib

# Module imports, not names (see checks.py): this runs while templates may be half-initialised.
from controller.core.alerts import routes as alert_routes
from controller.core.alerts.matchers import MatcherError, parse_matcher
from controller.core.analysis import templates
from controller.core.config.checks_types import Finding, Loc, Severity
from controller.core.config.model import Rollout


def check_alerts(rollout: Rollout) -> list[Finding]:
    """Problems in a rollout's ``alerts:`` routes, located relative to the rollout."""
    out: list[Finding] = []
    values = alert_routes.variables(rollout)
    for j, route in enumerate(rollout.alerts):
        parsed = []
        for k, text in enumerate(route.matchers):
            loc: Loc = ("alerts", j, "matchers", k)
            unknown = [v for v in templates.variables_in(text) if v not in values]
            if unknown:
                out.append(Finding(loc, _unknown_alert_var(unknown[0])))
                continue
            try:
                parsed.append(parse_matcher(templates.render(text, values)))
            except MatcherError as exc:
                out.append(Finding(loc, str(exc)))
        if parsed and len(parsed) == len(route.matchers) and all(m.matches({}) for m in parsed):
            out.append(
                Finding(
                    ("alerts", j, "matchers"),
                    "these matchers also match an alert that has none of their labels, so "
                    "almost any alert would act on this rollout; add one that requires a value "
                    '(e.g. alertname=~"ZaiProxy.*")',
                    Severity.WARNING,
                )
            )
    return out


def _unknown_alert_var(name: str) -> str:
    close = difflib.get_close_matches(name, alert_routes.ALERT_VARIABLES, n=1)
    if close:
        return f"unknown template variable {{{{ {name} }}}}; did you mean {{{{ {close[0]} }}}}?"
    known = ", ".join(alert_routes.ALERT_VARIABLES)
    return f"unknown template variable {{{{ {name} }}}}; a matcher may use: {known}"
