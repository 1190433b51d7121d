"""The chart's topology, each part its own container from the built image, on loopback.

A NATS server, the gateway (API keys on), the orchestrator and a runner, each started
from the image as the chart starts it (its command, environment, user and volumes, read
from ``helm template``). The example project is deployed from its flow image, an event
starts a run that completes; then a runner is killed in the middle of a run and a
second runner, started as Kubernetes would replace the pod, finishes it.

The chart sets ``readOnlyRootFilesystem: true``. buildah has no read-only root, so the
test checks the equivalent after the fact: the processes wrote nothing to their root
filesystems (each container's overlay upper directory holds only what ``buildah run``
itself puts there, as seen in a container that ran ``true``); all their writes went to
the volumes the chart mounts (``emptyDir`` there, host directories here).
"""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from events.embedded import free_port
from tests.image import chart_env
from tests.image.conftest import VERSION
from tests.image.containers import Container, image_config, run_once

pytestmark = [pytest.mark.image, pytest.mark.timeout(2400)]

ADMIN_KEY = "fb_" + uuid.uuid4().hex
VALUES: dict[str, Any] = {
    "nats": {"replicas": 1},
    "auth": {"adminApiKey": ADMIN_KEY},
    "runners": {
        # Short heartbeats and ack wait, so a dead runner's run is noticed in seconds.
        "defaults": {"limit": 2, "env": {"FLOWBUS_RUNNER_HEARTBEAT_INTERVAL": "1",
                                         "FLOWBUS_RUNNER_ACK_WAIT": "4"}},
        "pools": [{"name": "default",
                   "image": {"repository": "flowbus-example-orders", "tag": VERSION}}],
    },
}
T = TypeVar("T")


def wait_for(what: str, check: Callable[[], T | None], timeout: float,
             diagnose: Callable[[], str]) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value is not None and value is not False:
            return value
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n{diagnose()}")


def http(method: str, url: str, body: Any = None, *, key: str | None = ADMIN_KEY,
         content_type: str = "application/json") -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("content-type", content_type)
    if key is not None:
        request.add_header("authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            status, raw = answer.status, answer.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    except (urllib.error.URLError, OSError):
        return 0, None
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


def healthy(url: str) -> bool:
    return http("GET", url, key=None)[0] == 200


def tcp_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class Topology:
    """The running containers, and how to start more like them."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.started: list[Container] = []
        self.chart = chart_env.containers(VALUES)
        self.nats_url = ""

    def volumes(self, name: str, paths: list[str]) -> dict[str, Path]:
        """A fresh host directory per volume, owned by the chart's user (as an emptyDir)."""
        mounts = {}
        for path in paths:
            host = self.tmp / name / path.strip("/").replace("/", "-")
            host.mkdir(parents=True)
            os.chown(host, 10001, 10001)
            mounts[path] = host
        return mounts

    def start(self, component: str, name: str, **env: str) -> Container:
        spec = self.chart[component]
        entrypoint = image_config(spec.image).get("Entrypoint") or []
        container = Container(
            spec.image, name, [*entrypoint, *spec.args],
            env=chart_env.on_loopback(spec.env, FLOWBUS_NATS_URL=self.nats_url, **env),
            user=spec.user, mounts=self.volumes(name, spec.mounts), log_dir=self.tmp)
        self.started.append(container)          # stopped at the end even if start fails
        return container.start()

    def baseline_writes(self, image: str, paths: list[str]) -> set[str]:
        """What ``buildah run`` itself leaves in a container's root filesystem."""
        writes: list[str] = []
        done = run_once(image, ["true"], mounts=self.volumes(f"baseline-{uuid.uuid4().hex[:6]}",
                                                             paths), writes=writes)
        assert done.returncode == 0, done.stderr
        return set(writes)

    def diagnose(self) -> str:
        return "\n".join(f"--- {c.name} (running: {c.running})\n{c.log()[-4000:]}"
                         for c in self.started)

    def stop(self) -> None:
        for container in reversed(self.started):
            container.stop()


@pytest.fixture
def topology(tmp_path: Path, flowbus_image: str, example_image: str) -> Iterator[Topology]:
    top = Topology(tmp_path)
    try:
        yield top
    finally:
        top.stop()


def _run_of(api: str, order: str) -> Callable[[], dict[str, Any] | None]:
    def find() -> dict[str, Any] | None:
        status, page = http("GET", f"{api}/flow-runs?deployment=orders&limit=100")
        if status != 200:
            return None
        runs = [r for r in page["items"] if r["parameters"].get("order") == order]
        return runs[0] if runs else None
    return find


def _in_state(find: Callable[[], dict[str, Any] | None],
              states: set[str]) -> Callable[[], dict[str, Any] | None]:
    def check() -> dict[str, Any] | None:
        run = find()
        return run if run is not None and run["state"]["type"] in states else None
    return check


def test_the_charts_topology_runs_from_the_image(topology: Topology, flowbus_image: str,
                                                 example_image: str) -> None:
    top = topology
    chart = top.chart
    # The chart's default image is the one scripts/build-image tags.
    assert chart["gateway"].image == chart["orchestrator"].image == f"flowbus:{VERSION}"
    assert flowbus_image.endswith("/" + chart["gateway"].image)

    nats_port = free_port()
    top.nats_url = f"nats://127.0.0.1:{nats_port}"
    nats = Container(flowbus_image, "nats", ["nats-server", "-js", "-a", "127.0.0.1", "-p",
                                             str(nats_port), "-sd", "/var/lib/flowbus/nats"],
                     env={}, user=chart["gateway"].user,
                     mounts=top.volumes("nats", ["/var/lib/flowbus"]), log_dir=top.tmp)
    top.started.append(nats)
    nats.start()
    wait_for("NATS", lambda: tcp_open(nats_port), 120, top.diagnose)

    gw_port = free_port()
    top.start("gateway", "gateway", FLOWBUS_GATEWAY_HOST="127.0.0.1",
              FLOWBUS_GATEWAY_PORT=str(gw_port))
    orch_port = free_port()
    top.start("orchestrator", "orchestrator", FLOWBUS_ORCHESTRATOR_METRICS_HOST="127.0.0.1",
              FLOWBUS_ORCHESTRATOR_METRICS_PORT=str(orch_port))
    runner_port = free_port()
    first_runner = top.start("runner", "runner-1", FLOWBUS_RUNNER_METRICS_HOST="127.0.0.1",
                             FLOWBUS_RUNNER_METRICS_PORT=str(runner_port))
    base = f"http://127.0.0.1:{gw_port}"
    api = f"{base}/api/v1"
    wait_for("the gateway to be ready", lambda: healthy(f"{base}/readyz"), 180, top.diagnose)
    wait_for("the orchestrator", lambda: healthy(f"http://127.0.0.1:{orch_port}/healthz"), 180,
             top.diagnose)
    wait_for("the runner", lambda: healthy(f"http://127.0.0.1:{runner_port}/healthz"), 180,
             top.diagnose)

    # Deploy the example project from its image (its working directory is the project).
    deploy_env = {k: v for k, v in chart["runner"].env.items()
                  if k in ("FLOWBUS_NAMESPACE", "FLOWBUS_HOME")}
    deploy_writes: list[str] = []
    deployed = run_once(example_image, [*image_config(example_image)["Entrypoint"], "deploy"],
                        env={**deploy_env, "FLOWBUS_NATS_URL": top.nats_url},
                        mounts=top.volumes("deploy", chart["runner"].mounts),
                        writes=deploy_writes)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    status, deployment = http("GET", f"{api}/deployments/orders")
    assert status == 200, deployment
    assert deployment["entrypoint"] == "flows.py:process_order"
    assert deployment["code_digest"] is None          # the code is in the runner's image

    # Auth is on: an event without a key is refused, with the chart's admin key accepted.
    event = {"specversion": "1.0", "id": uuid.uuid4().hex, "source": "/tests/image",
             "type": "com.example.order", "data": {"order": "A-1", "seconds": 0}}
    ce = "application/cloudevents+json"
    assert http("POST", f"{base}/events", event, key=None, content_type=ce)[0] == 401
    status, answer = http("POST", f"{base}/events", event, content_type=ce)
    assert 200 <= status < 300, answer
    done = wait_for("the event's run to complete",
                    _in_state(_run_of(api, "A-1"), {"COMPLETED", "FAILED", "CRASHED"}),
                    180, top.diagnose)
    assert done["state"]["type"] == "COMPLETED", (done, top.diagnose())

    # A runner killed mid-run: its run is taken over by the runner that replaces it.
    slow = {**event, "id": uuid.uuid4().hex, "data": {"order": "B-2", "seconds": 15}}
    status, answer = http("POST", f"{base}/events", slow, content_type=ce)
    assert 200 <= status < 300, answer
    running = wait_for("the slow run to be running", _in_state(_run_of(api, "B-2"), {"RUNNING"}),
                       180, top.diagnose)
    first_runner.kill()
    second_port = free_port()
    top.start("runner", "runner-2", FLOWBUS_RUNNER_METRICS_HOST="127.0.0.1",
              FLOWBUS_RUNNER_METRICS_PORT=str(second_port))
    recovered = wait_for("the killed runner's run to be finished by the second runner",
                         _in_state(_run_of(api, "B-2"), {"COMPLETED", "FAILED"}),
                         240, top.diagnose)
    assert recovered["state"]["type"] == "COMPLETED", (recovered, top.diagnose())
    assert recovered["run_count"] == 2
    assert recovered["runner_id"] != running["runner_id"]

    # Nothing was written outside the volumes: a read-only root filesystem suffices.
    mounts = chart["gateway"].mounts
    assert mounts == chart["runner"].mounts == ["/tmp", "/var/lib/flowbus"]
    baseline = {flowbus_image: top.baseline_writes(flowbus_image, mounts),
                example_image: top.baseline_writes(example_image, mounts)}
    assert sorted(set(deploy_writes) - baseline[example_image]) == []
    written = {}
    for container in top.started:
        if container is not first_runner:
            image = container.image if "/" in container.image else f"localhost/{container.image}"
            # buildah run keeps /run/.containerenv while the process runs.
            expected = baseline[image] | {"/run/.containerenv"}
            written[container.name] = sorted(set(container.root_writes()) - expected)
    assert written and not any(written.values()), f"root filesystem writes: {written}"
