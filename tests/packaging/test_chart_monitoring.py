"""The chart's monitoring: ServiceMonitor, PrometheusRule (checked and unit-tested with
promtool) and the Grafana dashboard, all on metric names ptc really exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.shell.metrics import Metrics
from tests.packaging.chartcases import CHART_DIR, ChartRun, Rendered


def _ptc_metric_names() -> set[str]:
    names = set()
    for family in Metrics().registry.collect():
        names.add(family.name)
        names.update(s.name for s in family.samples)
        if family.type == "counter":
            names.add(family.name + "_total")
    return names


def test_service_monitor(chart_run: ChartRun) -> None:
    r: Rendered = chart_run.results["cluster-wide-monitoring"]
    sm = r.one("ServiceMonitor")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["metadata"]["name"] == "edge-ptc"
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    svc = r.one("Service")
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert sm["spec"]["namespaceSelector"] == {"matchNames": ["monitoring"]}
    [endpoint] = sm["spec"]["endpoints"]
    assert endpoint["port"] == svc["spec"]["ports"][0]["name"]
    assert endpoint["path"] == "/metrics" and endpoint["interval"] == "30s"
    assert not chart_run.results["zai-proxy"].find("ServiceMonitor")


def prometheus_rule(chart_run: ChartRun) -> dict[str, Any]:
    r: Rendered = chart_run.results["cluster-wide-monitoring"]
    rule = r.one("PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    return rule


def test_prometheus_rule_alerts(chart_run: ChartRun) -> None:
    rule = prometheus_rule(chart_run)
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    assert set(alerts) == {"PtcRollbackHappened", "PtcRolloutPausedTooLong", "PtcRolloutFailed"}
    assert "increase(ptc_rollbacks_total[10m])) > 0" in alerts["PtcRollbackHappened"]["expr"]
    paused = alerts["PtcRolloutPausedTooLong"]
    assert 'ptc_rollout_phase{phase="paused"}) == 1' in paused["expr"] and paused["for"] == "30m"
    assert 'ptc_rollout_phase{phase="failed"}) == 1' in alerts["PtcRolloutFailed"]["expr"]
    known = _ptc_metric_names()
    for alert in alerts.values():
        assert alert["labels"]["severity"] and alert["annotations"]["summary"]
        for name in re.findall(r"\bptc_[a-z_]+", alert["expr"]):
            assert name in known, f"{alert['alert']} uses {name}, which ptc does not export"


PROMTOOL_TESTS = """
rule_files: [rules.yaml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'ptc_rollbacks_total{namespace="devpod",rollout="zai-proxy",instance="a"}'
        values: '0 0 0 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1'
      - series: 'ptc_rollout_phase{namespace="devpod",rollout="zai-proxy",phase="paused",pod="a"}'
        values: '1x40'
      - series: 'ptc_rollout_phase{namespace="devpod",rollout="zai-proxy",phase="paused",pod="b"}'
        values: '1x40'
      - series: 'ptc_rollout_phase{namespace="devpod",rollout="web",phase="failed",instance="a"}'
        values: '0 0 1x10'
    alert_rule_test:
      - {eval_time: 2m, alertname: PtcRollbackHappened, exp_alerts: []}
      - {eval_time: 5m, alertname: PtcRollbackHappened, exp_alerts: [ROLLBACK]}
      - {eval_time: 20m, alertname: PtcRollbackHappened, exp_alerts: []}
      - {eval_time: 29m, alertname: PtcRolloutPausedTooLong, exp_alerts: []}
      - {eval_time: 31m, alertname: PtcRolloutPausedTooLong, exp_alerts: [PAUSED]}
      - {eval_time: 5m, alertname: PtcRolloutFailed, exp_alerts: [FAILED]}
"""
# Which alert each test expects (one per (namespace, rollout), even with two replicas scraped).
PROMTOOL_EXPECTED = {
    "ROLLBACK": ("PtcRollbackHappened", {"namespace": "devpod", "rollout": "zai-proxy"}),
    "PAUSED": ("PtcRolloutPausedTooLong", {"namespace": "devpod", "rollout": "zai-proxy"}),
    "FAILED": ("PtcRolloutFailed", {"namespace": "devpod", "rollout": "web"}),
}


def _promtool_tests(alerts: dict[str, dict[str, Any]]) -> str:
    """PROMTOOL_TESTS with each placeholder replaced by the alert's labels and annotations."""
    text = PROMTOOL_TESTS
    for placeholder, (name, labels) in PROMTOOL_EXPECTED.items():
        rule = alerts[name]
        annotations = {
            key: re.sub(r"\{\{\s*\$labels\.(\w+)\s*\}\}", lambda m, lb=labels: lb[m[1]], value)
            for key, value in rule["annotations"].items()
        }
        expected = {"exp_labels": {**labels, **rule["labels"]}, "exp_annotations": annotations}
        text = text.replace(placeholder, json.dumps(expected))
    return text


def test_prometheus_rule_fires_as_intended_under_promtool(
    chart_run: ChartRun, tmp_path: Path
) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package prometheus; `make prometheus`)")
    spec = prometheus_rule(chart_run)["spec"]
    alerts = {r["alert"]: r for g in spec["groups"] for r in g["rules"]}
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(spec))
    (tmp_path / "tests.yaml").write_text(_promtool_tests(alerts))
    for args in (["check", "rules", "rules.yaml"], ["test", "rules", "tests.yaml"]):
        proc = subprocess.run(
            [promtool, *args], cwd=tmp_path, capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_grafana_dashboard(chart_run: ChartRun) -> None:
    r: Rendered = chart_run.results["cluster-wide-monitoring"]
    [cm] = r.find("ConfigMap", "edge-ptc-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(cm["data"]["ptc.json"])
    assert dashboard == json.loads((CHART_DIR / "dashboards" / "ptc.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    text = "\n".join(exprs)
    for metric in (
        "ptc_rollout_phase",
        "ptc_rollout_weight_desired_percent",
        "ptc_rollout_weight_actual_percent",
        "ptc_analysis_value",
        "ptc_rollbacks_total",
    ):
        assert metric in text, f"dashboard does not show {metric}"
    known = _ptc_metric_names()
    for name in re.findall(r"\bptc_[a-z_]+", text):
        assert name in known, f"dashboard uses {name}, which ptc does not export"
    for code in ("429", "502"):
        assert any(
            f'status_code="{code}"' in e and "by (variant)" in e and "zai_proxy_requests_total" in e
            for e in exprs
        ), f"no {code} ratio by variant"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert not chart_run.results["zai-proxy"].find("ConfigMap", "ptc-dashboard")
