"""Real flowbus processes for the UI tests: gateway (auth on), orchestrator, runner."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from events.embedded import free_port

ROOT = Path(__file__).resolve().parents[2]
ADMIN_KEY = "ui-test-admin-key-0123456789abcdef"

FLOWS = '''
import time

from pydantic import Field

from flowbus import flow, get_run_logger, task
from flowbus.artifacts import create_markdown_artifact, create_table_artifact
from flowbus.assets import materialize
from flowbus.flow_runs import pause_flow_run
from flowbus.input import RunInput


class Approval(RunInput):
    approved: bool
    reviewer: str
    copies: int = Field(default=1, ge=1, description="how many to ship")


@task
def shout(message: str) -> str:
    return message.upper()


@flow(log_prints=True)
def greet(name: str = "world") -> str:
    get_run_logger().info("greeting %s", name)
    message = f"Hello, {name}!"
    print(message)
    shout(message)
    create_markdown_artifact(f"Greeted [{name}](https://example.com/{name})", key="greeting")
    create_table_artifact([{"who": name, "times": 1}])
    return message


@flow
def boom(reason: str = "no reason") -> None:
    raise RuntimeError(f"boom: {reason}")


@flow
def nap(seconds: int = 60, label: str = "nap") -> str:
    time.sleep(seconds)
    return label


@task
def crunch(n: int) -> int:
    return n * 2


@materialize("s3://lake/ui-report.csv", asset_deps=["postgres://shop/orders"], by="pandas")
def report(n: int) -> int:
    return n


@flow
def lake(n: int = 3) -> str:
    queued = crunch.delay(n)  # no task worker runs in these tests: it stays Scheduled
    report(n)
    return queued.task_run_id


@flow
def approve(release: str = "v1") -> str:
    answer = pause_flow_run(
        wait_for_input=Approval.with_initial_data(description="Ship it?", approved=False),
        timeout=900)
    return f"{release}: approved={answer.approved} by {answer.reviewer} x{answer.copies}"
'''

PROJECT = '''
deployments:
  - name: hello
    entrypoint: flows.py:greet
    parameters:
      name: world
    triggers:
      - expect: ["com.example.hello"]
        parameters:
          name: "{{ event.data.name }}"
  - name: nap
    entrypoint: flows.py:nap
  - name: approve
    entrypoint: flows.py:approve
  - name: lake
    entrypoint: flows.py:lake
  - name: boom
    entrypoint: flows.py:boom
    triggers:
      - expect: ["com.example.boom"]
        parameters:
          reason: "{{ event.data.reason }}"
  - name: after-hello
    entrypoint: flows.py:nap
    parameters:
      seconds: 0
      label: chained
    triggers:
      - expect: ["flowbus.flow-run.Completed"]
        when: "event.data.deployment == 'hello' && event.data.parameters.name.startsWith('chain')"
'''


@dataclass
class Stack:
    """The running processes and how to reach them."""

    url: str
    env: dict[str, str]
    home: Path
    keys: dict[str, str] = field(default_factory=dict)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def api(self, method: str, path: str, body: Any = None, *, key: str = ADMIN_KEY,
            content_type: str = "application/json") -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method, headers={
            "Authorization": f"Bearer {key}", "Content-Type": content_type})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                raw = r.read()
                return r.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def post_event(self, event_id: str, name: str, type: str = "com.example.hello") -> None:
        status, _ = self.api("POST", "/events", {
            "specversion": "1.0", "id": event_id, "source": "/ui-test",
            "type": type, "data": {"name": name, "reason": name}},
            content_type="application/cloudevents+json")
        assert status == 202, status

    def runs(self, **params: str) -> list[dict[str, Any]]:
        query = "&".join(f"{k}={v}" for k, v in params.items())
        status, body = self.api("GET", f"/api/v1/flow-runs?limit=100&{query}")
        assert status == 200, body
        return list(body["items"])

    def wait_run(self, predicate: Any, what: str, seconds: float = 60, **params: str) -> dict[str, Any]:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for run in self.runs(**params):
                if predicate(run):
                    return run
            time.sleep(0.2)
        raise AssertionError(f"no run {what} within {seconds} s: {self.runs(**params)}")


    def runner_id(self) -> str:
        """The runner's id, as it announced it when it started serving."""
        found = re.search(r"runner (\S+) ready", (self.home / "runner.log").read_text())
        assert found, "the runner did not say it is ready"
        return found.group(1)


def _wait_ready(url: str, procs: list[subprocess.Popen[bytes]], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for proc in procs:
            assert proc.poll() is None, f"{proc.args} exited with {proc.returncode}"
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise AssertionError("the gateway did not become ready")


def _wait_logged(log: Path, text: str, procs: list[subprocess.Popen[bytes]],
                 seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for proc in procs:
            assert proc.poll() is None, f"{proc.args} exited with {proc.returncode}"
        if text in log.read_text(errors="replace"):
            return
        time.sleep(0.2)
    raise AssertionError(f"{log.name} did not say {text!r} within {seconds} s")


def start_stack(nats_url: str, namespace: str, home: Path) -> Stack:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWBUS_")}
    env.update(FLOWBUS_NATS_URL=nats_url, FLOWBUS_NAMESPACE=namespace, FLOWBUS_HOME=str(home),
               FLOWBUS_GATEWAY_ADMIN_API_KEY=ADMIN_KEY, FLOWBUS_GATEWAY_AUTH="true",
               FLOWBUS_RUNNER_FETCH_WAIT="0.2", PYTHONPATH=str(ROOT))
    project = home / "project"
    project.mkdir(parents=True)
    (project / "flows.py").write_text(FLOWS)
    (project / "flowbus.yaml").write_text(PROJECT)
    flowbus = [sys.executable, "-m", "flowbus.cli"]
    subprocess.run([*flowbus, "deploy", "-f", str(project / "flowbus.yaml")], env=env, cwd=project,
                   check=True, capture_output=True, timeout=120)
    port = free_port()
    stack = Stack(url=f"http://127.0.0.1:{port}", env=env, home=home)
    commands = {"gateway": ["gateway", "--port", str(port)], "orchestrator": ["orchestrator"],
                "runner": ["runner", "--limit", "2"]}
    try:
        for name, args in commands.items():
            with (home / f"{name}.log").open("wb") as log:
                stack.procs.append(subprocess.Popen([*flowbus, *args], env=env, cwd=project,
                                                    stdout=log, stderr=subprocess.STDOUT))
        _wait_ready(stack.url, stack.procs)
        # An event posted before the orchestrator leads (its consumer exists) is not seen.
        _wait_logged(home / "orchestrator.log", "leading", stack.procs)
        _wait_logged(home / "runner.log", "ready", stack.procs)
        for name, scopes in {"reader": ["read"], "writer": ["write"]}.items():
            status, body = stack.api("POST", "/api/v1/api-keys", {"name": name, "scopes": scopes})
            assert status == 201, body
            stack.keys[name] = body["key"]
    except BaseException:
        stop_stack(stack)
        raise
    return stack


def stop_stack(stack: Stack) -> None:
    for proc in stack.procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in stack.procs:
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
