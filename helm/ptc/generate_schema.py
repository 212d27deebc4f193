#!/usr/bin/env python3
"""Write helm/ptc/values.schema.json: the chart's own values plus ptc's config schema.

The `prometheus`, `defaults` and `rollouts` values become the config file, so their schema is
ptc's config schema (``controller.core.config.schema.config_schema()``, committed as
config/schema.json), embedded under ``$defs``. The rest describes the chart's knobs.

    python helm/ptc/generate_schema.py          # rewrite values.schema.json
    python helm/ptc/generate_schema.py --check  # exit 1 if it is stale (CI)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from controller.core.config.schema import config_schema
from controller.core.sharding import MAX_SHARDS

SCHEMA_PATH = Path(__file__).resolve().parent / "values.schema.json"

OBJECT: dict[str, Any] = {"type": "object"}
STRING: dict[str, Any] = {"type": "string"}
BOOLEAN: dict[str, Any] = {"type": "boolean"}
STRING_MAP: dict[str, Any] = {"type": "object", "additionalProperties": {"type": "string"}}
LIST_OF_OBJECTS: dict[str, Any] = {"type": "array", "items": {"type": "object"}}
DURATION: dict[str, Any] = {"type": "string", "pattern": "^([0-9]+(ms|s|m|h|d|w|y))+$"}
PORT: dict[str, Any] = {"type": "integer", "minimum": 1, "maximum": 65535}
DNS_LABEL: dict[str, Any] = {
    "type": "string",
    "maxLength": 63,
    "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
}


def strict(properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """An object with exactly these keys (a typo in values fails the install)."""
    return {"type": "object", "additionalProperties": False, "properties": properties, **extra}


def probe() -> dict[str, Any]:
    """Probe timings (the chart sets httpGet itself)."""
    positive = {"type": "integer", "minimum": 1}
    return strict(
        {
            "initialDelaySeconds": {"type": "integer", "minimum": 0},
            "periodSeconds": positive,
            "timeoutSeconds": positive,
            "failureThreshold": positive,
            "successThreshold": positive,
        }
    )


def chart_values() -> dict[str, Any]:
    """The chart's own values (everything but the config file)."""
    return {
        "global": OBJECT,
        "replicaCount": {"type": "integer", "minimum": 0},
        "sharding": strict(
            {
                "enabled": BOOLEAN,
                "shards": {"type": "integer", "minimum": 1, "maximum": MAX_SHARDS},
            }
        ),
        "image": strict(
            {
                "repository": {"type": "string", "minLength": 1},
                "tag": STRING,
                "digest": {"type": "string", "pattern": "^(|sha256:[a-f0-9]{64})$"},
                "pullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]},
            }
        ),
        "imagePullSecrets": LIST_OF_OBJECTS,
        "nameOverride": STRING,
        "fullnameOverride": STRING,
        "commonLabels": STRING_MAP,
        "logFormat": {"enum": ["auto", "json", "console"]},
        "logLevel": {"enum": ["debug", "info", "warning", "error"]},
        "extraArgs": {"type": "array", "items": STRING},
        "extraEnv": LIST_OF_OBJECTS,
        "extraVolumes": LIST_OF_OBJECTS,
        "extraVolumeMounts": LIST_OF_OBJECTS,
        "watchNamespaces": {"type": "array", "items": DNS_LABEL, "uniqueItems": True},
        "serviceAccount": strict(
            {
                "create": BOOLEAN,
                "name": STRING,
                "annotations": STRING_MAP,
                "automountServiceAccountToken": BOOLEAN,
            }
        ),
        "rbac": strict({"create": BOOLEAN, "clusterWide": BOOLEAN}),
        "claimGuard": strict(
            {
                "enabled": BOOLEAN,
                # Kubernetes refuses a binding with none, a repeated one, or Deny with Warn.
                "validationActions": {
                    "type": "array",
                    "items": {"enum": ["Deny", "Warn", "Audit"]},
                    "minItems": 1,
                    "uniqueItems": True,
                    "not": {
                        "allOf": [{"contains": {"const": "Deny"}}, {"contains": {"const": "Warn"}}]
                    },
                },
            }
        ),
        "podAnnotations": STRING_MAP,
        "podLabels": STRING_MAP,
        "podSecurityContext": OBJECT,
        "securityContext": OBJECT,
        "resources": OBJECT,
        "tmpSizeLimit": {"type": ["string", "integer"]},
        "livenessProbe": probe(),
        "readinessProbe": probe(),
        "terminationGracePeriodSeconds": {"type": "integer", "minimum": 0},
        "revisionHistoryLimit": {"type": "integer", "minimum": 0},
        "priorityClassName": STRING,
        "nodeSelector": STRING_MAP,
        "tolerations": LIST_OF_OBJECTS,
        "affinity": OBJECT,
        "topologySpreadConstraints": LIST_OF_OBJECTS,
        "service": strict(
            {
                "type": {"enum": ["ClusterIP", "NodePort", "LoadBalancer"]},
                "port": PORT,
                "annotations": STRING_MAP,
            }
        ),
        "podDisruptionBudget": strict(
            {"enabled": BOOLEAN, "minAvailable": {"type": ["integer", "string"]}}
        ),
        "serviceMonitor": strict(
            {
                "enabled": BOOLEAN,
                "namespace": STRING,
                "labels": STRING_MAP,
                "interval": DURATION,
                "scrapeTimeout": DURATION,
            }
        ),
        "prometheusRule": strict(
            {
                "enabled": BOOLEAN,
                "namespace": STRING,
                "labels": STRING_MAP,
                "additionalLabels": STRING_MAP,
                "rollbackWindow": DURATION,
                "pausedFor": DURATION,
                "failedFor": DURATION,
                "severity": strict({"rollback": STRING, "paused": STRING, "failed": STRING}),
            }
        ),
        "dashboard": strict(
            {
                "enabled": BOOLEAN,
                "namespace": STRING,
                "labels": STRING_MAP,
                "annotations": STRING_MAP,
            }
        ),
        "alertmanager": alertmanager(),
    }


def alertmanager() -> dict[str, Any]:
    """The Alertmanager receiver: token Secret and the optional AlertmanagerConfig."""
    matcher = strict(
        {
            "name": {"type": "string", "minLength": 1},
            "value": STRING,
            "matchType": {"enum": ["=", "!=", "=~", "!~"]},
        },
        required=["name"],
    )
    config = strict(
        {
            "enabled": BOOLEAN,
            "namespace": {"anyOf": [{"const": ""}, DNS_LABEL]},
            "labels": STRING_MAP,
            "matchers": {"type": "array", "items": matcher},
            "groupBy": {"type": "array", "items": STRING},
            "groupWait": DURATION,
            "groupInterval": DURATION,
            "repeatInterval": DURATION,
        }
    )
    return strict(
        {
            "enabled": BOOLEAN,
            "token": STRING,
            "existingSecret": STRING,
            "secretKey": {"type": "string", "pattern": "^[-._a-zA-Z0-9]+$"},
            "alertmanagerConfig": config,
        },
        # On, it needs a token: in the values, or in an existing Secret.
        **{
            "if": {"properties": {"enabled": {"const": True}}, "required": ["enabled"]},
            "then": {
                "anyOf": [
                    {"properties": {"token": {"minLength": 1}}, "required": ["token"]},
                    {
                        "properties": {"existingSecret": {"minLength": 1}},
                        "required": ["existingSecret"],
                    },
                ]
            },
        },
    )


def values_schema() -> dict[str, Any]:
    """The whole values.schema.json document."""
    config = config_schema()
    properties = chart_values()
    properties["prometheus"] = {
        "$ref": "#/$defs/PrometheusSettings",
        "description": "`prometheus` of the ptc config file.",
    }
    properties["defaults"] = {
        "$ref": "#/$defs/RolloutDefaults",
        "description": "`defaults` of the ptc config file.",
    }
    properties["rollouts"] = {
        **config["properties"]["rollouts"],
        "description": "`rollouts` of the ptc config file.",
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "ptc Helm chart values",
        "description": (
            "Generated by helm/ptc/generate_schema.py from the chart's values and ptc's config "
            "schema (config/schema.json); do not edit by hand."
        ),
        "type": "object",
        "additionalProperties": False,
        "properties": properties,
        "$defs": config["$defs"],
    }


def render() -> str:
    """values.schema.json as committed."""
    return json.dumps(values_schema(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write the schema, or with --check report whether the committed one is current."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = SCHEMA_PATH.read_text() if SCHEMA_PATH.exists() else ""
        if current != text:
            print(
                f"{SCHEMA_PATH} is stale: run 'python helm/ptc/generate_schema.py'",
                file=sys.stderr,
            )
            return 1
        return 0
    SCHEMA_PATH.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
