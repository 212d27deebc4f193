"""The chart's Alertmanager receiver: the token Secret, its mount and flag, the AlertmanagerConfig.

kubernetes-validate knows no CRDs, so the AlertmanagerConfig is checked against the part of the
Prometheus Operator's monitoring.coreos.com/v1alpha1 schema the chart renders (field names,
required keys, enums and the duration pattern copied from the CRD), closed to unknown keys so a
misspelt field fails here instead of being dropped by the API server.
"""

from __future__ import annotations

import base64
from typing import Any

import jsonschema
import pytest

from controller.ops.cli import build_parser
from controller.shell.server import ALERTS_PATH
from tests.packaging.chartcases import (
    ALERT_TOKEN,
    GOOD,
    ChartRun,
    Rendered,
    container_of,
    deployment_of,
    fullname,
)

DURATION = {
    "type": "string",
    "pattern": r"^(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?"
    r"(([0-9]+)ms)?$",
}
SECRET_KEY_SELECTOR = {
    "type": "object",
    "additionalProperties": False,
    "required": ["key"],
    "properties": {"key": {"type": "string"}, "name": {"type": "string"}, "optional": {}},
}


def closed(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": list(required),
        "properties": properties,
    }


MATCHER = closed(
    {
        "name": {"type": "string", "minLength": 1},
        "value": {"type": "string"},
        "matchType": {"enum": ["!=", "=", "=~", "!~"]},
        "regex": {"type": "boolean"},
    },
    ("name",),
)
WEBHOOK = closed(
    {
        "url": {"type": "string", "minLength": 1},
        "urlSecret": SECRET_KEY_SELECTOR,
        "sendResolved": {"type": "boolean"},
        "maxAlerts": {"type": "integer", "minimum": 0},
        "timeout": DURATION,
        "httpConfig": closed(
            {
                "authorization": closed(
                    {"type": {"type": "string"}, "credentials": SECRET_KEY_SELECTOR}
                ),
                "followRedirects": {"type": "boolean"},
                "tlsConfig": {"type": "object"},
            }
        ),
    }
)
ALERTMANAGER_CONFIG = closed(
    {
        "apiVersion": {"const": "monitoring.coreos.com/v1alpha1"},
        "kind": {"const": "AlertmanagerConfig"},
        "metadata": {"type": "object", "required": ["name", "namespace"]},
        "spec": closed(
            {
                "route": closed(
                    {
                        "receiver": {"type": "string"},
                        "groupBy": {"type": "array", "items": {"type": "string"}},
                        "groupWait": DURATION,
                        "groupInterval": DURATION,
                        "repeatInterval": DURATION,
                        "matchers": {"type": "array", "items": MATCHER},
                        "continue": {"type": "boolean"},
                    }
                ),
                "receivers": {
                    "type": "array",
                    "items": closed(
                        {
                            "name": {"type": "string", "minLength": 1},
                            "webhookConfigs": {"type": "array", "items": WEBHOOK},
                        },
                        ("name",),
                    ),
                },
            }
        ),
    },
    ("apiVersion", "kind", "metadata", "spec"),
)


def amc(r: Rendered) -> dict[str, Any]:
    [obj] = r.find("AlertmanagerConfig")
    return obj


def token_mount(r: Rendered) -> tuple[str, dict[str, Any]]:
    """The --alerts-token-file ptc runs with, and the Secret volume behind it."""
    c = container_of(r)
    args = build_parser().parse_args(c["args"])
    path = args.alerts_token_file
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    mount_path, _, file = path.rpartition("/")
    mount = mounts[mount_path]
    assert mount["readOnly"] is True
    volumes = {v["name"]: v for v in deployment_of(r)["spec"]["template"]["spec"]["volumes"]}
    secret = volumes[mount["name"]]["secret"]
    [item] = secret["items"]
    assert item["path"] == file
    return path, secret


def test_the_receiver_is_off_by_default(scenario: Rendered) -> None:
    if scenario.job.values.get("alertmanager", {}).get("enabled"):
        return
    args = build_parser().parse_args(container_of(scenario)["args"])
    assert not args.alerts_token_file
    assert not scenario.find("Secret") and not scenario.find("AlertmanagerConfig")


def test_the_token_secret_is_mounted_and_given_to_ptc(chart_run: ChartRun) -> None:
    r: Rendered = chart_run.results["alertmanager"]
    path, volume = token_mount(r)
    assert path == "/etc/ptc-alerts/token"
    secrets = {s["metadata"]["namespace"]: s for s in r.find("Secret")}
    # In the release namespace for the pods, in the AlertmanagerConfig's for the Operator.
    assert set(secrets) == {"ptc-system", "devpod"}
    for secret in secrets.values():
        assert secret["metadata"]["name"] == volume["secretName"] == "ptc-alerts"
        assert base64.b64decode(secret["data"][volume["items"][0]["key"]]).decode() == ALERT_TOKEN


def test_an_existing_secret_is_used_as_it_is(chart_run: ChartRun) -> None:
    r: Rendered = chart_run.results["alertmanager-existing-secret"]
    _, volume = token_mount(r)
    assert volume["secretName"] == "ptc-webhook" and volume["items"][0]["key"] == "bearer"
    assert not r.find("Secret"), "the chart must not create or overwrite an existing Secret"
    credentials = amc(r)["spec"]["receivers"][0]["webhookConfigs"][0]["httpConfig"]
    assert credentials["authorization"]["credentials"] == {"name": "ptc-webhook", "key": "bearer"}


@pytest.mark.parametrize("name", ["alertmanager", "alertmanager-existing-secret"])
def test_alertmanager_config_shape(chart_run: ChartRun, name: str) -> None:
    obj = amc(chart_run.results[name])
    jsonschema.validate(obj, ALERTMANAGER_CONFIG)


def test_the_receiver_posts_to_ptcs_service_with_the_token(chart_run: ChartRun) -> None:
    r: Rendered = chart_run.results["alertmanager"]
    obj = amc(r)
    assert obj["metadata"]["namespace"] == "devpod"
    assert obj["metadata"]["labels"]["alertmanagerConfig"] == "ptc"
    spec = obj["spec"]
    [receiver] = spec["receivers"]
    assert spec["route"]["receiver"] == receiver["name"]
    assert spec["route"]["matchers"] == [
        {"name": "alertname", "value": "ZaiProxy.*", "matchType": "=~"}
    ]
    assert spec["route"]["groupWait"] == "10s" and spec["route"]["repeatInterval"] == "4h"
    [webhook] = receiver["webhookConfigs"]
    svc = r.one("Service")
    port = svc["spec"]["ports"][0]["port"]
    name, ns = svc["metadata"]["name"], svc["metadata"]["namespace"]
    assert webhook["url"] == f"http://{name}.{ns}.svc:{port}{ALERTS_PATH}"
    assert name == fullname(r) and ns == "ptc-system"
    assert webhook["sendResolved"] is True
    auth = webhook["httpConfig"]["authorization"]
    _, volume = token_mount(r)
    assert auth["type"] == "Bearer"
    assert auth["credentials"] == {"name": volume["secretName"], "key": volume["items"][0]["key"]}
    # The Secret the Operator reads is in the AlertmanagerConfig's namespace.
    assert any(s["metadata"]["namespace"] == "devpod" for s in r.find("Secret"))


def test_the_shape_check_bites() -> None:
    good = {
        "apiVersion": "monitoring.coreos.com/v1alpha1",
        "kind": "AlertmanagerConfig",
        "metadata": {"name": "x", "namespace": "y"},
        "spec": {"route": {"receiver": "ptc"}, "receivers": [{"name": "ptc"}]},
    }
    jsonschema.validate(good, ALERTMANAGER_CONFIG)
    for bad in (
        {**good, "spec": {**good["spec"], "receiver": [{"name": "ptc"}]}},
        {**good, "spec": {"route": {"receiver": "ptc", "groupWait": "10 s"}}},
        {**good, "spec": {"receivers": [{"name": "ptc", "webhookConfigs": [{"http_config": {}}]}]}},
        {**good, "spec": {"route": {"matchers": [{"name": "a", "matchType": "~="}]}}},
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, ALERTMANAGER_CONFIG)


def test_alertmanager_scenarios_are_installed() -> None:
    assert {"alertmanager", "alertmanager-existing-secret"} <= set(GOOD)
