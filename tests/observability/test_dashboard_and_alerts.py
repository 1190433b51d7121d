"""The dashboard and the alerting rules are valid, and every query parses as PromQL."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import yaml

FILES = Path(__file__).resolve().parents[2] / "helm" / "flowbus" / "files"


def dashboard_queries() -> list[str]:
    dashboard = json.loads((FILES / "grafana-dashboard.json").read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p["targets"]]


def test_dashboard_has_the_panels_the_operators_need() -> None:
    dashboard = json.loads((FILES / "grafana-dashboard.json").read_text())
    titles = " | ".join(p["title"] for p in dashboard["panels"])
    for needed in ("Events in", "Trigger firings", "Runs finished", "Event to run's job",
                   "Scheduled to running", "Failed and crashed", "Runner utilisation",
                   "consumer lag", "Automation actions failed"):
        assert needed in titles
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])


def test_every_dashboard_query_parses(promtool: str, tmp_path: Path) -> None:
    # promtool parses rule expressions: check each panel query as a recording rule,
    # with Grafana's $__rate_interval given a concrete value.
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"flowbus:panel_{i}", "expr": q.replace("$__rate_interval", "5m")}
        for i, q in enumerate(dashboard_queries())]}]}
    path = tmp_path / "panels.yaml"
    path.write_text(yaml.safe_dump(rules))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True,
                            text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_broken_query_would_be_caught(promtool: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "x", "rules": [
        {"record": "flowbus:bad", "expr": "sum(rate(flowbus_runner_runs_total[5m]"}]}]}))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True,
                            text=True, timeout=30, check=False)
    assert result.returncode != 0


def test_alerting_rules_pass_promtool(promtool: str) -> None:
    result = subprocess.run([promtool, "check", "rules", str(FILES / "alerts.yaml")],
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 rules found" in result.stdout


def test_the_monitoring_doc_lists_every_metric() -> None:
    from prometheus_client import CollectorRegistry

    from flowbus._sink_metrics import REGISTRY as SDK
    from gateway.metrics import Metrics as GatewayMetrics
    from orchestrator.automations.metrics import AutomationMetrics
    from orchestrator.metrics import Metrics as OrchestratorMetrics
    from runners.metrics import RunnerMetrics

    orchestrator = OrchestratorMetrics()
    AutomationMetrics(orchestrator.registry)
    from gateway.sources.metrics import SourceMetrics

    registries: list[CollectorRegistry] = [GatewayMetrics().registry, orchestrator.registry,
                                           RunnerMetrics().registry, SDK, SourceMetrics().registry]
    doc = (Path(__file__).resolve().parents[2] / "docs" / "monitoring.md").read_text()
    for registry in registries:
        for family in registry.collect():
            name = family.name + ("_total" if family.type == "counter" else "")
            assert f"`{name}`" in doc, f"docs/monitoring.md does not describe {name}"
