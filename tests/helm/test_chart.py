"""The Helm chart, rendered with real Helm and validated against the Kubernetes schemas."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

CHART = Path(__file__).resolve().parents[2] / "helm" / "flowbus"
CRDS = {"ScaledObject", "PodMonitor", "PrometheusRule"}  # not in the core schemas; checked field by field
K8S_VERSION = "1.30.0"

SCENARIOS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "external-nats": {
        "nats": {"bundled": False, "external": {
            "url": "nats://nats.infra:4222", "existingSecret": "nats-auth",
            "userKey": "user", "passwordKey": "password", "credsKey": "flowbus.creds",
            "monitoringEndpoint": "nats.infra:8222"}},
        "runners": {"pools": [{"name": "default", "scaling": {"mode": "keda", "minReplicas": 0}}]},
    },
    "keda": {"runners": {"pools": [{"name": "default", "scaling": {"mode": "keda", "minReplicas": 0,
                                                                  "maxReplicas": 20}}]}},
    "ingress-tls": {"gateway": {"ingress": {
        "enabled": True, "className": "nginx",
        "hosts": [{"host": "flows.example.com", "paths": ["/"]}],
        "tls": [{"secretName": "flows-tls", "hosts": ["flows.example.com"]}]}}},
    "two-pools": {"runners": {"pools": [
        {"name": "default", "limit": 4},
        {"name": "gpu", "limit": 1, "drainTimeoutSeconds": 600, "scaling": {"mode": "hpa"},
         "resources": {"limits": {"nvidia.com/gpu": 1}}}]}},
    "no-auth-monitoring": {"auth": {"enabled": False},
                           "monitoring": {"serviceMonitor": {"enabled": True},
                                          "prometheusRule": {"enabled": True},
                                          "grafanaDashboard": {"enabled": True}},
                           "networkPolicy": {"metricsFrom": [{"namespaceSelector": {
                               "matchLabels": {"name": "monitoring"}}}]}},
    "own-secrets-key": {"secretsKey": {"existingSecret": "flowbus-keys", "secretKey": "fernet"}},
}


def render(values: dict[str, Any]) -> list[dict[str, Any]]:
    chart = helm.Chart.load(CHART)
    manifests = chart.render(values, name="prod", namespace="flows", is_install=True)
    docs = []
    for path, text in manifests.items():
        if path.endswith(".txt"):
            continue
        docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def containers(docs: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(workload, container) for every container of every Deployment and StatefulSet."""
    return [(w, c) for w in docs if w["kind"] in ("Deployment", "StatefulSet")
            for c in w["spec"]["template"]["spec"]["containers"]]


def env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_lint_is_clean(scenario: str) -> None:
    report = helm.lint(CHART, SCENARIOS[scenario], strict=True, kube_version=f"v{K8S_VERSION}")
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_manifest_is_valid_kubernetes(scenario: str) -> None:
    docs = render(SCENARIOS[scenario])
    assert docs
    for doc in docs:
        if doc["kind"] in CRDS:
            continue
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_selectors_match_pod_labels(scenario: str) -> None:
    docs = render(SCENARIOS[scenario])
    pod_labels = [w["spec"]["template"]["metadata"]["labels"] for w, _ in containers(docs)]
    for w, _ in containers(docs):
        selector = w["spec"]["selector"]["matchLabels"]
        assert selector.items() <= w["spec"]["template"]["metadata"]["labels"].items(), w["metadata"]
    for doc in by_kind(docs, "Service") + by_kind(docs, "PodDisruptionBudget"):
        selector = doc["spec"]["selector"]
        selector = selector.get("matchLabels", selector)
        assert any(selector.items() <= labels.items() for labels in pod_labels), doc["metadata"]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_no_container_runs_as_root(scenario: str) -> None:
    for workload, container in containers(render(SCENARIOS[scenario])):
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"]["drop"] == ["ALL"]
        assert pod["automountServiceAccountToken"] is False


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_the_nats_url_reaches_every_part(scenario: str) -> None:
    values = SCENARIOS[scenario]
    docs = render(values)
    external = values.get("nats", {}).get("external", {}).get("url")
    expected = external or "nats://prod-flowbus-nats:4222"
    flowbus_containers = [c for _, c in containers(docs) if c["name"] != "nats"]
    assert {c["name"] for c in flowbus_containers} >= {"gateway", "orchestrator", "runner"}
    for container in flowbus_containers:
        assert env(container)["FLOWBUS_NATS_URL"] == expected
        assert env(container)["FLOWBUS_NAMESPACE"] == "flowbus"
    if not external:
        [service] = [s for s in by_kind(docs, "Service") if s["metadata"]["name"] == "prod-flowbus-nats"]
        assert {p["port"] for p in service["spec"]["ports"]} >= {4222}
    else:
        assert by_kind(docs, "StatefulSet") == []
        runner = next(c for _, c in containers(docs) if c["name"] == "runner")
        assert env(runner)["FLOWBUS_NATS_PASSWORD"] == {
            "secretKeyRef": {"name": "nats-auth", "key": "password"}}
        assert env(runner)["FLOWBUS_NATS_CREDS"] == "/etc/flowbus/nats/flowbus.creds"


def test_gateway_ports_and_probes_match_what_it_serves() -> None:
    docs = render({"gateway": {"port": 9000}})
    [gateway] = [c for _, c in containers(docs) if c["name"] == "gateway"]
    assert gateway["args"] == ["gateway"]
    assert env(gateway)["FLOWBUS_GATEWAY_PORT"] == "9000"
    assert env(gateway)["FLOWBUS_GATEWAY_HOST"] == "0.0.0.0"
    assert gateway["ports"] == [{"name": "http", "containerPort": 9000}]
    assert gateway["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert gateway["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    [service] = [s for s in by_kind(docs, "Service") if s["metadata"]["name"] == "prod-flowbus-gateway"]
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert env(gateway)["FLOWBUS_GATEWAY_ADMIN_API_KEY"]["secretKeyRef"]["name"] == "prod-flowbus-auth"


def test_each_pool_gets_its_runners_and_grace_beyond_drain() -> None:
    docs = render(SCENARIOS["two-pools"])
    runners = {w["metadata"]["labels"]["flowbus.io/work-pool"]: (w, c)
               for w, c in containers(docs) if c["name"] == "runner"}
    assert set(runners) == {"default", "gpu"}
    gpu_workload, gpu = runners["gpu"]
    assert gpu["args"] == ["runner", "--pool", "gpu", "--limit", "1", "--isolation", "process"]
    assert gpu["resources"]["limits"]["nvidia.com/gpu"] == 1
    grace = gpu_workload["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > 600
    [hpa] = [h for h in by_kind(docs, "HorizontalPodAutoscaler") if "gpu" in h["metadata"]["name"]]
    assert hpa["spec"]["scaleTargetRef"]["name"] == gpu_workload["metadata"]["name"]
    assert "replicas" not in gpu_workload["spec"]  # the HPA owns it


def test_keda_scales_a_pool_on_its_consumer_lag() -> None:
    docs = render(SCENARIOS["keda"])
    [scaled] = by_kind(docs, "ScaledObject")
    [trigger] = scaled["spec"]["triggers"]
    assert scaled["spec"]["minReplicaCount"] == 0 and scaled["spec"]["maxReplicaCount"] == 20
    assert trigger["type"] == "nats-jetstream"
    assert trigger["metadata"]["stream"] == "FLOWBUS_RUNS"
    assert trigger["metadata"]["consumer"] == "pool-default"
    assert trigger["metadata"]["natsServerMonitoringEndpoint"] == "prod-flowbus-nats.flows.svc.cluster.local:8222"
    [runner] = [w for w in by_kind(docs, "Deployment") if "runner" in w["metadata"]["name"]]
    assert scaled["spec"]["scaleTargetRef"]["name"] == runner["metadata"]["name"]


def test_only_the_gateway_is_open_and_only_flowbus_reaches_nats() -> None:
    docs = render({})
    policies = {p["metadata"]["name"]: p for p in by_kind(docs, "NetworkPolicy")}
    deny = policies["prod-flowbus-default-deny"]
    assert deny["spec"]["podSelector"]["matchLabels"] == {"app.kubernetes.io/instance": "prod"}
    assert "ingress" not in deny["spec"]
    gateway = policies["prod-flowbus-gateway"]["spec"]
    assert gateway["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "gateway"
    assert gateway["ingress"] == [{"ports": [{"port": "http"}]}]
    nats = policies["prod-flowbus-nats"]["spec"]["ingress"]
    assert nats[0]["from"][0]["podSelector"]["matchLabels"]["flowbus.io/nats-client"] == "true"
    for workload, container in containers(docs):
        if container["name"] != "nats":
            assert workload["spec"]["template"]["metadata"]["labels"]["flowbus.io/nats-client"] == "true"


def test_bundled_cluster_gets_replicated_streams() -> None:
    docs = render({})
    [orchestrator] = [c for _, c in containers(docs) if c["name"] == "orchestrator"]
    assert env(orchestrator)["FLOWBUS_STREAM_REPLICAS"] == "3"
    [statefulset] = by_kind(docs, "StatefulSet")
    conf = by_kind(docs, "ConfigMap")[0]["data"]["nats.conf"]
    assert statefulset["spec"]["replicas"] == 3
    assert conf.count("nats://prod-flowbus-nats-") == 3 and "jetstream" in conf


def test_generated_admin_key_lives_in_a_secret() -> None:
    [secret] = [s for s in by_kind(render({}), "Secret") if s["metadata"]["name"].endswith("-auth")]
    assert secret["metadata"]["name"] == "prod-flowbus-auth"
    assert list(secret["data"]) == ["admin-api-key"]
    assert [s["metadata"]["name"] for s in by_kind(render({"auth": {"existingSecret": "mine"}}), "Secret")] == [
        "prod-flowbus-nats-users", "prod-flowbus-secrets-key"]


def test_every_part_gets_the_generated_secrets_key_from_one_secret() -> None:
    import base64

    from events.secretbox import SecretBox

    docs = render({})
    [secret] = [s for s in by_kind(docs, "Secret") if s["metadata"]["name"] == "prod-flowbus-secrets-key"]
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    key = base64.b64decode(secret["data"]["secrets-key"]).decode()
    box = SecretBox(key)  # a valid key: it seals and opens
    assert box.open(box.seal("s3cret")) == "s3cret"
    parts = {c["name"]: env(c) for _, c in containers(docs) if c["name"] != "nats"}
    assert set(parts) == {"gateway", "orchestrator", "runner"}
    for name, variables in parts.items():
        assert variables["FLOWBUS_SECRETS_KEY"] == {
            "secretKeyRef": {"name": "prod-flowbus-secrets-key", "key": "secrets-key"}}, name
    [nats] = [c for _, c in containers(docs) if c["name"] == "nats"]
    assert "FLOWBUS_SECRETS_KEY" not in env(nats)


def test_an_existing_secret_supplies_the_secrets_key_of_every_runner_pool() -> None:
    values = {**SCENARIOS["own-secrets-key"], "runners": SCENARIOS["two-pools"]["runners"]}
    docs = render(values)
    assert [s["metadata"]["name"] for s in by_kind(docs, "Secret")] == [
        "prod-flowbus-nats-users", "prod-flowbus-auth"]
    parts = [c for _, c in containers(docs) if c["name"] != "nats"]
    assert sorted(c["name"] for c in parts) == ["gateway", "orchestrator", "runner", "runner"]
    for container in parts:
        assert env(container)["FLOWBUS_SECRETS_KEY"] == {
            "secretKeyRef": {"name": "flowbus-keys", "key": "fernet"}}


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        ({"gateway": {"replicas": "two"}}, "/gateway/replicas"),
        ({"gatewy": {}}, "'gatewy' not allowed"),
        ({"runners": {"pools": [{"name": "Bad_Pool"}]}}, "/runners/pools/0/name"),
        ({"runners": {"pools": []}}, "/runners/pools"),
        ({"runners": {"pools": [{"name": "p", "scaling": {"mode": "magic"}}]}}, "scaling/mode"),
        ({"nats": {"external": {"url": "http://nats"}}}, "/nats/external/url"),
        ({"gateway": {"port": 70000}}, "/gateway/port"),
        ({"secretsKey": {"secretKey": "no spaces"}}, "/secretsKey/secretKey"),
        ({"secretsKey": {"existingSecret": 3}}, "/secretsKey/existingSecret"),
        ({"secretsKey": {"name": "x"}}, "'name' not allowed"),
    ],
)
def test_bad_values_are_refused_by_the_schema(values: dict[str, Any], fragment: str) -> None:
    with pytest.raises(helm.HelmValuesError, match=fragment):
        render(values)


def test_external_nats_without_url_is_refused() -> None:
    with pytest.raises(helm.HelmError, match=r"nats\.external\.url is required"):
        render({"nats": {"bundled": False}})


def test_monitoring_ships_the_alerts_and_the_dashboard() -> None:
    import json

    docs = render(SCENARIOS["no-auth-monitoring"])
    [rule] = by_kind(docs, "PrometheusRule")
    alerts = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]}
    assert alerts == {"FlowbusConsumerLagGrowing", "FlowbusRunFailureRateHigh",
                      "FlowbusNoOrchestratorLeader", "FlowbusRunnersSaturated",
                      "FlowbusDeadLettersWaiting"}
    [dashboard] = [c for c in by_kind(docs, "ConfigMap") if c["metadata"]["name"].endswith("-dashboard")]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["flowbus.json"])["uid"] == "flowbus-overview"
    assert by_kind(render({}), "PrometheusRule") == []


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_flowbus_setting_the_chart_sets_exists(scenario: str) -> None:
    # A misspelt FLOWBUS_* variable would make the part refuse to start.
    import importlib

    from events.settings import check_environment
    from flowbus.cli._common import SETTINGS_MODULES

    for module in SETTINGS_MODULES:
        importlib.import_module(module)
    names = {name for _, c in containers(render(SCENARIOS[scenario])) for name in env(c)
             if name.startswith("FLOWBUS_")}
    assert "FLOWBUS_NATS_URL" in names
    check_environment(dict.fromkeys(names, "x"))
