"""The chart's task-worker Deployments and their KEDA scaling on each task's queue."""

from __future__ import annotations

from typing import Any

import pytest

from events.background import consumer_name
from tests.helm.test_chart import by_kind, containers, env, render

WORKERS: dict[str, Any] = {"taskWorkers": {"workers": [
    {"name": "images", "tasks": ["my_tasks:resize", "my_tasks:thumbnail"], "limit": 4,
     "workingDir": "/app", "scaling": {"mode": "keda", "maxReplicas": 5}},
]}}


def test_no_task_worker_by_default() -> None:
    docs = render({})
    assert not [w for w in by_kind(docs, "Deployment") if "task-worker" in w["metadata"]["name"]]


def test_a_task_worker_serves_its_tasks_and_keda_scales_it_to_zero_on_their_queues() -> None:
    docs = render(WORKERS)
    [(workload, container)] = [(w, c) for w, c in containers(docs) if c["name"] == "task-worker"]
    assert container["args"] == ["task-worker", "my_tasks:resize", "my_tasks:thumbnail",
                                 "--limit", "4"]
    assert container["workingDir"] == "/app"
    assert env(container)["FLOWBUS_TASK_WORKER_DRAIN_TIMEOUT"] == "30"
    assert "replicas" not in workload["spec"]  # KEDA owns it
    labels = workload["spec"]["template"]["metadata"]["labels"]
    assert labels["flowbus.io/nats-client"] == "true"
    [scaled] = [s for s in by_kind(docs, "ScaledObject") if "task-worker" in s["metadata"]["name"]]
    assert scaled["spec"]["scaleTargetRef"]["name"] == workload["metadata"]["name"]
    assert scaled["spec"]["minReplicaCount"] == 0 and scaled["spec"]["maxReplicaCount"] == 5
    triggers = scaled["spec"]["triggers"]
    assert [t["metadata"]["consumer"] for t in triggers] == [
        consumer_name("my_tasks.resize"), consumer_name("my_tasks.thumbnail")]
    assert {t["metadata"]["stream"] for t in triggers} == {"FLOWBUS_TASKS"}


@pytest.mark.parametrize("worker", [
    {"name": "x", "tasks": []},
    {"name": "x", "tasks": ["no colon"]},
    {"name": "Bad_Name", "tasks": ["m:t"]},
    {"name": "x", "tasks": ["m:t"], "scaling": {"mode": "hpa"}},
])
def test_bad_task_worker_values_are_refused(worker: dict[str, Any]) -> None:
    with pytest.raises(Exception, match="taskWorkers"):
        render({"taskWorkers": {"workers": [worker]}})


def test_the_task_worker_manifests_are_valid_and_lint_clean() -> None:
    import importlib

    import kubernetes_validate

    from events.settings import check_environment
    from flowbus.cli._common import SETTINGS_MODULES
    from tests.helm.test_chart import CHART, CRDS, K8S_VERSION, helm

    report = helm.lint(CHART, WORKERS, strict=True, kube_version=f"v{K8S_VERSION}")
    assert report["errors"] == []
    docs = render(WORKERS)
    for doc in docs:
        if doc["kind"] not in CRDS:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    for module in SETTINGS_MODULES:
        importlib.import_module(module)
    names = {n for _, c in containers(docs) for n in env(c) if n.startswith("FLOWBUS_")}
    check_environment(dict.fromkeys(names, "x"))
