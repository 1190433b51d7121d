"""What the Helm chart gives each flowbus container: image, command, environment, mounts.

Read from real ``helm template`` output (helm-python-sdk, as in tests/helm), so the
image tests run the containers exactly as the chart configures them; only the
addresses that only exist in a cluster are moved to this machine's loopback.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

CHART = Path(__file__).resolve().parents[2] / "helm" / "flowbus"
RELEASE = "prod"


@dataclass
class ChartContainer:
    """One container of a rendered Deployment."""

    component: str
    image: str
    args: list[str]
    env: dict[str, str]
    mounts: list[str]          # mountPath of every volume (all emptyDir in these values)
    user: str                  # "uid:gid" from the pod's securityContext


def render(values: dict[str, Any]) -> list[dict[str, Any]]:
    manifests = helm.Chart.load(CHART).render(values, name=RELEASE, namespace="flows",
                                              is_install=True)
    docs: list[dict[str, Any]] = []
    for path, text in manifests.items():
        if not path.endswith(".txt"):
            docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs


def _secrets(docs: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    return {d["metadata"]["name"]: {k: base64.b64decode(v).decode()
                                    for k, v in d.get("data", {}).items()}
            for d in docs if d["kind"] == "Secret"}


def _env(container: dict[str, Any], secrets: dict[str, dict[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = str(item["value"])
            continue
        ref = item.get("valueFrom", {}).get("secretKeyRef")
        assert ref is not None, f"unsupported env source in the chart: {item}"
        env[item["name"]] = secrets[ref["name"]][ref["key"]]
    return env


def containers(values: dict[str, Any]) -> dict[str, ChartContainer]:
    """The flowbus containers the chart renders with ``values``, by component."""
    docs = render(values)
    secrets = _secrets(docs)
    found: dict[str, ChartContainer] = {}
    for doc in docs:
        if doc["kind"] != "Deployment":
            continue
        pod = doc["spec"]["template"]["spec"]
        security = pod["securityContext"]
        (container,) = pod["containers"]
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for mount in container.get("volumeMounts", []):
            assert "emptyDir" in volumes[mount["name"]], mount
        found[doc["metadata"]["labels"]["app.kubernetes.io/component"]] = ChartContainer(
            component=doc["metadata"]["labels"]["app.kubernetes.io/component"],
            image=container["image"], args=list(container.get("args", [])),
            env=_env(container, secrets),
            mounts=[m["mountPath"] for m in container.get("volumeMounts", [])],
            user=f"{security['runAsUser']}:{security['runAsGroup']}")
    return found


def on_loopback(env: dict[str, str], **overrides: str) -> dict[str, str]:
    """``env`` with the cluster-only settings replaced; each must be one the chart set."""
    missing = sorted(set(overrides) - set(env))
    assert not missing, f"the chart no longer renders {missing}"
    return {**env, **overrides}
