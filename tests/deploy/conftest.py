"""A flow project on disk, and the command line run in-process against the test NATS."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from events.bus import Bus
from events.cloudevent import CloudEvent
from flowbus.cli import cli

FLOWS = '''
from flowbus import flow


@flow
def greet(name: str = "world", times: int = 1) -> str:
    """Say hello."""
    return f"Hello, {name}!" * times


def not_a_flow(x: int) -> int:
    return x
'''

PROJECT = '''
deployments:
  - name: hello
    entrypoint: flows.py:greet
    parameters: {name: you}
    triggers:
      - expect: ["com.example.hello"]
        parameters: {name: "{{ event.data.name }}"}
    schedules:
      - cron: "0 9 * * *"
        timezone: Europe/Berlin
    tags: [demo]
'''


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A directory with flows.py and a flowbus.yaml deploying greet."""
    return write(tmp_path / "proj", {"flows.py": FLOWS, "flowbus.yaml": PROJECT})


class Cli:
    """``flowbus ...`` in this process, on a thread (commands run their own event loop)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = {k: v for k, v in env.items() if k.startswith("FLOWBUS_")}

    async def __call__(self, *args: str) -> Result:
        runner = CliRunner()
        return await asyncio.to_thread(runner.invoke, cli, list(args), env=self.env,
                                       catch_exceptions=False)


@pytest.fixture
def flowbus_cli(flowbus_env: dict[str, str]) -> Cli:
    return Cli(flowbus_env)


async def act_as_runner(bus: Bus, run_id: str, *, deployment: str = "hello",
                        final: str = "Completed", result: object = None,
                        parameters: dict[str, object] | None = None) -> None:
    """Write a run's record through its states as the orchestrator and a runner would."""
    import json

    from events.records import FlowRun, State

    kv = await bus.kv(bus.layout.flow_runs)
    run = FlowRun(id=run_id, name=f"run-{run_id[:6]}", flow_name="greet", deployment_name=deployment,
                  parameters=parameters or {}, state=State.named("Scheduled"))
    await kv.create(run_id, run.model_dump_json().encode())
    for name in ("Pending", "Running", final):
        await asyncio.sleep(0.02)
        if name == final and result is not None:
            store = await bus.objects(bus.layout.results)
            await store.put(run_id, json.dumps({"serializer": "json", "value": result}).encode())
        run = run.transition(State.named(name), result_ref=run_id if result is not None else None)
        await kv.put(run_id, run.model_dump_json().encode())


async def next_run_request(bus: Bus, durable: str = "fake-orchestrator") -> CloudEvent:
    """The next run-requested event, as the orchestrator would take it."""
    consumer = await bus.consumer(durable, filter_subjects=[
        f"{bus.layout.events_prefix}.flowbus.deployment.run-requested"])
    for _ in range(100):
        [*deliveries] = await consumer.fetch(1, max_wait=0.2)
        if deliveries:
            await deliveries[0].ack()
            return deliveries[0].event
    raise AssertionError("no run was requested")
