"""The `alerts:` section of a rollout: validated with file and line like the rest of the config."""

from __future__ import annotations

import pytest

from controller.core.config import ConfigError, load_config_text
from controller.core.config.model import AlertAction

HEAD = (
    "rollouts:\n"
    "  - name: web\n"
    "    service: web\n"
    "    stable: {deployment: web}\n"
    "    canary: {deployment: web-v2, version: v2}\n"
    "    steps: [{weight: 50}]\n"
    "    alerts:\n"
)


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config_text(text, "f.yaml")
    return [str(p) for p in info.value.problems]


def test_routes_load_with_their_actions() -> None:
    text = HEAD + (
        "      - matchers: ['alertname=~\"Web.*\"', 'namespace=\"{{ namespace }}\"']\n"
        "      - matchers: ['alertname=\"WebSlow\"']\n"
        "        action: pause\n"
    )
    loaded = load_config_text(text, "f.yaml")
    assert loaded.warnings == []
    routes = loaded.config.rollouts[0].alerts
    assert [r.action for r in routes] == [AlertAction.ROLLBACK, AlertAction.PAUSE]
    assert routes[0].matchers[1] == 'namespace="{{ namespace }}"'


@pytest.mark.parametrize(
    ("route", "expected"),
    [
        (
            "      - matchers: ['alertname=~\"(Web\"']\n",
            "f.yaml:8: rollout 'web': alerts[0].matchers[0]: bad regex '(Web': missing ), "
            "unterminated subpattern at position 0",
        ),
        (
            "      - matchers: ['alertname=~\"Web.*\"', 'pod=~\"{{ canary_pod_regx }}\"']\n",
            "f.yaml:8: rollout 'web': alerts[0].matchers[1]: unknown template variable "
            "{{ canary_pod_regx }}; did you mean {{ canary_pod_regex }}?",
        ),
        (
            "      - matchers: ['alertname ~ Web']\n",
            "f.yaml:8: rollout 'web': alerts[0].matchers[0]: expected NAME OP \"VALUE\" with OP "
            "one of =, !=, =~, !~ (e.g. alertname=~\"ZaiProxy.*\"), got 'alertname ~ Web'",
        ),
        (
            "      - matchers: []\n",
            "f.yaml:8: rollout 'web': alerts[0].matchers: expected at least 1 item(s), got none",
        ),
        (
            "      - matchers: ['alertname=\"Web\"']\n        action: restart\n",
            "f.yaml:9: rollout 'web': alerts[0].action: input should be 'rollback' or 'pause', "
            "got 'restart'",
        ),
        (
            "      - matcher: ['alertname=\"Web\"']\n",
            "f.yaml:8: rollout 'web': alerts[0].matcher: unknown key 'matcher'; "
            "did you mean 'matchers'?",
        ),
    ],
)
def test_bad_routes_are_reported_at_their_line(route: str, expected: str) -> None:
    assert expected in problems(HEAD + route)


def test_a_route_that_matches_almost_any_alert_is_a_warning() -> None:
    text = HEAD + "      - matchers: ['severity!=\"info\"']\n"
    [warning] = [str(w) for w in load_config_text(text, "f.yaml").warnings]
    assert warning.startswith("f.yaml:8: rollout 'web': alerts[0].matchers: warning: these")


def test_routes_in_defaults_are_inherited_and_a_rollout_replaces_them() -> None:
    text = (
        "defaults:\n"
        "  alerts:\n"
        "    - matchers: ['alertname=~\"Web.*\"', 'service=\"{{ service }}\"']\n"
        "rollouts:\n"
        "  - name: web\n"
        "    service: web\n"
        "    stable: {deployment: web}\n"
        "    canary: {deployment: web-v2, version: v2}\n"
        "    steps: [{weight: 50}]\n"
        "  - name: api\n"
        "    service: api\n"
        "    stable: {deployment: api}\n"
        "    canary: {deployment: api-v2, version: v2}\n"
        "    steps: [{weight: 50}]\n"
        "    alerts: [{matchers: ['alertname=\"ApiDown\"'], action: pause}]\n"
    )
    web, api = load_config_text(text, "f.yaml").config.rollouts
    assert web.alerts[0].matchers[0] == 'alertname=~"Web.*"'
    assert [r.action for r in api.alerts] == [AlertAction.PAUSE]
    bad = text.replace("'alertname=~\"Web.*\"'", "'alertname=~\"(\"'")
    assert any(
        p.startswith("f.yaml:3: rollout 'web': alerts[0].matchers[0]: bad regex")
        and p.endswith("(inherited from defaults)")
        for p in problems(bad)
    )
