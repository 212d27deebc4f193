"""The zai-proxy pack and scrape config as the docs show them: valid, and the pack as shipped.

The Helm values examples in README.md and helm/ptc/README.md repeat config/zai-proxy.yaml's
metric pack; these tests load them as ptc loads a config and fail when they drift apart.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.core.config import load_config, load_config_text

REPO = Path(__file__).resolve().parents[2]
DOCS = {
    "README.md": REPO / "README.md",
    "helm/ptc/README.md": REPO / "helm" / "ptc" / "README.md",
    "docs/zai-proxy.md": REPO / "docs" / "zai-proxy.md",
}


def yaml_blocks(path: Path) -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", path.read_text(), re.DOTALL)


def helm_example(path: Path) -> dict[str, Any]:
    block = next(b for b in yaml_blocks(path) if "rollouts:" in b and "analysis:" in b)
    values = yaml.safe_load(block)
    assert isinstance(values, dict)
    return values


@pytest.mark.parametrize("doc", ["README.md", "helm/ptc/README.md"])
def test_the_helm_example_carries_the_shipped_metric_pack(doc: str) -> None:
    values = helm_example(DOCS[doc])
    config_keys = {k: values[k] for k in ("prometheus", "defaults", "rollouts") if k in values}
    shown = load_config_text(yaml.safe_dump(config_keys), doc).config.rollout("zai-proxy")
    shipped = load_config(REPO / "config" / "zai-proxy.yaml").config.rollout("zai-proxy")
    assert [m.model_dump() for m in shown.analysis.metrics] == [
        m.model_dump() for m in shipped.analysis.metrics
    ]
    assert shown.analysis.capacity_gate == shipped.analysis.capacity_gate
    assert shown.analysis.min_requests == shipped.analysis.min_requests


@pytest.mark.parametrize("doc", ["README.md", "docs/zai-proxy.md"])
def test_the_pod_monitor_adds_namespace_and_pod_for_both_versions(doc: str) -> None:
    monitors = [
        m
        for b in yaml_blocks(DOCS[doc])
        for m in yaml.safe_load_all(b)
        if isinstance(m, dict) and m.get("kind") == "PodMonitor"
    ]
    assert len(monitors) == 1
    (monitor,) = monitors
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    # The shared label selects v1's and v2's pods, whatever the traffic Service selects.
    assert monitor["spec"]["selector"] == {"matchLabels": {"app": "zai-proxy"}}
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["path"] == "/metrics" and endpoint["port"] == "http"


def test_the_service_monitor_alternative_uses_a_metrics_service_of_its_own() -> None:
    documents = [
        d for b in yaml_blocks(DOCS["docs/zai-proxy.md"]) for d in yaml.safe_load_all(b) if d
    ]
    service = next(d for d in documents if d.get("kind") == "Service")
    monitor = next(d for d in documents if d.get("kind") == "ServiceMonitor")
    assert service["metadata"]["name"] != "zai-proxy"  # not the Service ptc re-selects
    assert service["spec"]["selector"] == {"app": "zai-proxy"}
    assert monitor["spec"]["selector"]["matchLabels"] == service["metadata"]["labels"]
    plain = next(d for d in documents if "scrape_configs" in d)
    targets = {r.get("target_label") for r in plain["scrape_configs"][0]["relabel_configs"]}
    assert {"namespace", "pod"} <= targets
