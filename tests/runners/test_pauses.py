"""Pausing, suspending and resuming flow runs on real runners, and durable task reuse.

A paused run keeps its runner; a suspended run releases it and resumes on any runner
process with validated input, its completed tasks reused; a pause that times out
fails the run (or the body handles it); a crash retry reuses completed tasks.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest
from runner_helpers import (
    RunnerProcess,
    deploy_checked,
    runner_settings,
    running,
    schedule,
    wait_final,
    wait_state,
    wait_until,
)

from events import pauses
from events.bus import Bus
from events.cloudevent import CloudEvent
from events.deployments import read_result
from events.records import FlowRun
from events.settings import NatsSettings

FAST_ENV = {"heartbeat_interval": "0.25", "ack_wait": "2.0", "fetch_wait": "0.2", "limit": "2"}

APPROVAL = """
import os
from flowbus import flow, task
from flowbus.flow_runs import suspend_flow_run
from flowbus.input import RunInput


class Approval(RunInput):
    approved: bool
    note: str = ""


def note(journal: str, line: str) -> None:
    with open(journal, "a") as f:
        f.write(line + "\\n")


@task
def prepare(journal: str) -> int:
    note(journal, f"prepare {os.getpid()}")
    return 21


@flow
def approve(journal: str) -> dict:
    value = prepare(journal)
    answer = suspend_flow_run(wait_for_input=Approval.with_initial_data(approved=False))
    note(journal, f"after {os.getpid()}")
    return {"value": value * 2, "approved": answer.approved, "note": answer.note}
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def record(bus: Bus, run_id: str) -> FlowRun:
    kv = await bus.kv(bus.layout.flow_runs)
    entry = await kv.get(run_id)
    assert entry is not None
    return FlowRun.model_validate_json(entry.value)


async def wait_released(bus: Bus, run_id: str) -> FlowRun:
    run = await wait_state(bus, run_id, "Suspended", 30)
    for _ in range(200):
        run = await record(bus, run_id)
        if run.runner_id is None:
            return run
        await asyncio.sleep(0.05)
    raise AssertionError(f"the suspended run is still held by {run.runner_id}")


async def run_events(bus: Bus, run_id: str) -> list[CloudEvent]:
    consumer = await bus.consumer(f"pauses{run_id[:8]}")
    out: list[CloudEvent] = []
    try:
        while batch := await consumer.fetch(500, max_wait=0.3):
            out.extend(d.event for d in batch if d.event.subject == f"flowbus.flow-run.{run_id}")
            await asyncio.gather(*(d.ack() for d in batch))
    finally:
        await consumer.close()
        await bus.delete_consumer(bus.layout.events_stream, consumer.durable)
    return out


async def test_suspended_run_resumes_with_validated_input_on_another_runner_process(
    bus: Bus, flowbus_env: dict[str, str], tmp_path: Path
) -> None:
    journal = tmp_path / "journal.txt"
    deployment = await deploy_checked(bus, "approve", APPROVAL, "approve", root=tmp_path / "code")
    first = RunnerProcess(flowbus_env, tmp_path / "first.log", **FAST_ENV, runner_id="first")
    second: RunnerProcess | None = None
    try:
        await first.wait_ready()
        run_id = await schedule(bus, deployment, {"journal": str(journal)})
        suspended = await wait_released(bus, run_id)
        pause = suspended.state.data.pause
        assert pause is not None and pause.reschedule and pause.run_input_keyset is not None
        assert suspended.pause_keys == ["1"] and suspended.run_count == 1
        first.process.send_signal(signal.SIGTERM)
        first.process.wait(30)
        second = RunnerProcess(flowbus_env, tmp_path / "second.log", **FAST_ENV, runner_id="second")
        await second.wait_ready()
        with pytest.raises(pauses.InvalidRunInput, match="approved"):
            await pauses.resume(bus, run_id, {"approved": "perhaps"}, source="tests")
        with pytest.raises(pauses.InvalidRunInput, match="extra"):
            await pauses.resume(bus, run_id, {"approved": True, "extra": 1}, source="tests")
        assert (await record(bus, run_id)).state.name == "Suspended"  # refused input changes nothing
        resumed = await pauses.resume(bus, run_id, {"approved": True, "note": "ok"}, source="tests")
        assert resumed.state.name == "Resuming" and resumed.state.type == "SCHEDULED"
        done = await wait_final(bus, run_id, 60)
    finally:
        first.stop()
        if second is not None:
            second.stop()
    assert done.state.name == "Completed", done.state.message
    assert done.runner_id == "second" and done.run_count == 2
    assert await read_result(bus, done) == {"value": 42, "approved": True, "note": "ok"}
    lines = journal.read_text().split("\n")
    assert [line.split()[0] for line in lines if line] == ["prepare", "after"]  # task reused
    assert lines[0].split()[1] != lines[1].split()[1]  # the body ended in another process
    types = [e.type for e in await run_events(bus, run_id)]
    assert "flowbus.flow-run.Suspended" in types
    assert types.index("flowbus.flow-run.Resumed") > types.index("flowbus.flow-run.Suspended")
    with pytest.raises(pauses.NotPaused, match="Completed"):
        await pauses.resume(bus, run_id, None, source="tests")


PAUSING = """
from flowbus import flow
from flowbus.exceptions import FlowPauseTimeout
from flowbus.flow_runs import pause_flow_run


@flow
def wait_here(timeout: int, catch: bool = False) -> str:
    try:
        number = pause_flow_run(wait_for_input=int, timeout=timeout)
    except FlowPauseTimeout:
        if not catch:
            raise
        return "went on without input"
    return f"got {number}"
"""


async def test_paused_run_keeps_its_runner_and_resumes_in_place(
    bus: Bus, nats_settings: NatsSettings, tmp_path: Path
) -> None:
    deployment = await deploy_checked(bus, "wait-here", PAUSING, "wait_here", root=tmp_path / "code")
    async with running(bus, nats_settings, runner_settings(limit=1, runner_id="solo")):
        run_id = await schedule(bus, deployment, {"timeout": 120})
        paused = await wait_state(bus, run_id, "Paused", 30)
        assert paused.runner_id == "solo" and paused.state.data.pause is not None
        await asyncio.sleep(0.8)  # several heartbeats: the runner keeps the run alive
        touched = await record(bus, run_id)
        assert touched.state.name == "Paused" and touched.updated > paused.updated
        with pytest.raises(pauses.InvalidRunInput, match="value"):
            await pauses.resume(bus, run_id, {"value": "seven"}, source="tests")
        resumed = await pauses.resume(bus, run_id, {"value": 7}, source="tests")
        assert resumed.state.name == "Running" and resumed.runner_id == "solo"
        done = await wait_final(bus, run_id, 30)
    assert done.state.name == "Completed" and done.run_count == 1
    assert await read_result(bus, done) == "got 7"


async def test_a_draining_runner_hands_a_paused_run_over_and_another_runner_resumes_it(
    bus: Bus, flowbus_env: dict[str, str], tmp_path: Path
) -> None:
    deployment = await deploy_checked(bus, "wait-here", PAUSING, "wait_here", root=tmp_path / "code")
    first = RunnerProcess(flowbus_env, tmp_path / "first.log", **FAST_ENV, runner_id="first",
                          drain_timeout="1")
    second: RunnerProcess | None = None
    try:
        await first.wait_ready()
        run_id = await schedule(bus, deployment, {"timeout": 600})
        paused = await wait_state(bus, run_id, "Paused", 30)
        assert paused.runner_id == "first"
        first.process.send_signal(signal.SIGTERM)
        first.process.wait(60)
        handed = await record(bus, run_id)
        # Suspended instead: the same pause (key, expiry, input keys), no runner.
        assert handed.state.name == "Suspended" and handed.runner_id is None
        assert handed.state.message == pauses.HANDED_OVER_MESSAGE
        pause, before = handed.state.data.pause, paused.state.data.pause
        assert pause is not None and before is not None and pause.reschedule
        assert (pause.key, pause.timeout, pause.run_input_keyset) == (
            before.key, before.timeout, before.run_input_keyset)
        second = RunnerProcess(flowbus_env, tmp_path / "second.log", **FAST_ENV, runner_id="second")
        await second.wait_ready()
        with pytest.raises(pauses.InvalidRunInput, match="value"):
            await pauses.resume(bus, run_id, {"value": "seven"}, source="tests")
        resumed = await pauses.resume(bus, run_id, {"value": 7}, source="tests")
        assert resumed.state.name == "Resuming"
        done = await wait_final(bus, run_id, 60)
    finally:
        first.stop()
        if second is not None:
            second.stop()
    assert done.state.name == "Completed", done.state.message
    assert done.runner_id == "second" and done.run_count == 2
    assert await read_result(bus, done) == "got 7"
    types = [e.type for e in await run_events(bus, run_id)]
    assert types.index("flowbus.flow-run.Suspended") > types.index("flowbus.flow-run.Paused")
    assert "flowbus.flow-run.Resuming" in types


async def test_a_pause_that_times_out_fails_the_run_or_lets_the_body_go_on(
    bus: Bus, nats_settings: NatsSettings, tmp_path: Path
) -> None:
    deployment = await deploy_checked(bus, "wait-here", PAUSING, "wait_here", root=tmp_path / "code")
    async with running(bus, nats_settings, runner_settings(limit=2, runner_id="solo")):
        failing = await schedule(bus, deployment, {"timeout": 1})
        going_on = await schedule(bus, deployment, {"timeout": 1, "catch": True})
        failed = await wait_final(bus, failing, 30)
        went_on = await wait_final(bus, going_on, 30)
    assert failed.state.name == "Failed"
    assert "paused and never resumed" in (failed.state.message or "")
    assert went_on.state.name == "Completed"
    assert await read_result(bus, went_on) == "went on without input"


SUSPEND_BRIEFLY = """
from flowbus import flow
from flowbus.flow_runs import suspend_flow_run


@flow
def brief() -> str:
    suspend_flow_run(timeout=1)
    return "resumed"
"""


async def test_a_suspended_run_past_its_timeout_cannot_resume_and_fails(
    bus: Bus, nats_settings: NatsSettings, tmp_path: Path
) -> None:
    deployment = await deploy_checked(bus, "brief", SUSPEND_BRIEFLY, "brief", root=tmp_path / "code")
    async with running(bus, nats_settings, runner_settings(limit=1, runner_id="solo")):
        run_id = await schedule(bus, deployment)
        await wait_released(bus, run_id)
        await asyncio.sleep(1.2)
        with pytest.raises(pauses.PauseExpired):
            await pauses.resume(bus, run_id, None, source="tests")
    failed = await record(bus, run_id)
    assert failed.state.name == "Failed"
    assert failed.state.message == "The flow was suspended and never resumed."


CRASHY = """
import os, time
from flowbus import flow, task


@task
def charge(journal: str) -> int:
    with open(journal, "a") as f:
        f.write(f"charged {os.getpid()}\\n")
    return 5


@flow(retries=1)
def checkout(journal: str, gate: str) -> int:
    total = charge(journal)
    with open(journal, "a") as f:
        f.write(f"waiting {os.getpid()}\\n")
    while not os.path.exists(gate):
        time.sleep(0.05)
    return total * 10
"""


async def test_a_crash_retry_reuses_the_tasks_the_crashed_attempt_completed(
    bus: Bus, nats_settings: NatsSettings, flowbus_env: dict[str, str], tmp_path: Path
) -> None:
    journal, gate = tmp_path / "journal.txt", tmp_path / "gate"
    deployment = await deploy_checked(bus, "checkout", CRASHY, "checkout", root=tmp_path / "code")
    victim = RunnerProcess(flowbus_env, tmp_path / "victim.log", **FAST_ENV, runner_id="victim")
    try:
        await victim.wait_ready()
        run_id = await schedule(bus, deployment, {"journal": str(journal), "gate": str(gate)})
        await wait_until(lambda: journal.exists() and "waiting" in journal.read_text(), 30)
        os.kill(victim.process.pid, signal.SIGKILL)
        victim.process.wait(5)
    finally:
        victim.stop()
    worker = int(journal.read_text().split()[-1])
    await wait_until(lambda: not alive(worker), 30)  # the orphaned attempt is gone for good
    gate.write_text("open")
    async with running(bus, nats_settings, runner_settings(limit=1, runner_id="rescuer")):
        done = await wait_state(bus, run_id, "Completed", 60)
    assert done.run_count == 2 and done.runner_id == "rescuer"
    assert await read_result(bus, done) == 50
    kinds = [line.split()[0] for line in journal.read_text().splitlines()]
    assert kinds == ["charged", "waiting", "waiting"]  # the task's side effect happened once


async def test_the_orchestrator_fails_a_suspended_run_once_its_timeout_passed(
    bus: Bus, nats_settings: NatsSettings, tmp_path: Path
) -> None:
    from events.records import utcnow
    from orchestrator.creation import RunCreator
    from orchestrator.metrics import Metrics
    from orchestrator.runs import RunTracker
    from orchestrator.settings import OrchestratorSettings

    deployment = await deploy_checked(bus, "brief", SUSPEND_BRIEFLY, "brief", root=tmp_path / "code")
    async with running(bus, nats_settings, runner_settings(limit=1, runner_id="solo")):
        run_id = await schedule(bus, deployment)
        await wait_released(bus, run_id)
    runs, slots = await bus.kv(bus.layout.flow_runs), await bus.kv(bus.layout.concurrency)
    settings, metrics = OrchestratorSettings(), Metrics()
    tracker = RunTracker(runs, slots, RunCreator(bus, runs, slots, settings, metrics, utcnow),
                         settings, metrics, utcnow, attempts_kv=await bus.kv(bus.layout.attempts))
    await tracker.load()
    await asyncio.sleep(1.2)  # past the suspension's timeout of 1 s
    await tracker.tick()
    failed = await record(bus, run_id)
    assert failed.state.name == "Failed"
    assert failed.state.message == "The flow was suspended and never resumed."


GATED = """
import os, time
from flowbus import flow, task


@task
def step(journal: str) -> int:
    with open(journal, "a") as f:
        f.write("step\\n")
    return 3


@flow
def gated(journal: str, gate: str) -> int:
    value = step(journal)
    with open(journal, "a") as f:
        f.write("waiting\\n")
    while not os.path.exists(gate):
        time.sleep(0.05)
    return value + 1
"""


async def test_a_run_suspended_from_outside_is_stopped_released_and_resumes(
    bus: Bus, nats_settings: NatsSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flowbus import _remote
    from flowbus.flow_runs import suspend_flow_run

    journal, gate = tmp_path / "journal.txt", tmp_path / "gate"
    deployment = await deploy_checked(bus, "gated", GATED, "gated", root=tmp_path / "code")
    monkeypatch.setenv("FLOWBUS_NATS_URL", ",".join(nats_settings.nats_url))
    monkeypatch.setenv("FLOWBUS_NAMESPACE", nats_settings.namespace)
    _remote.reset()
    try:
        async with running(bus, nats_settings, runner_settings(limit=1, runner_id="solo")):
            run_id = await schedule(bus, deployment, {"journal": str(journal), "gate": str(gate)})
            await wait_until(lambda: journal.exists() and "waiting" in journal.read_text(), 30)
            await asyncio.to_thread(suspend_flow_run, flow_run_id=run_id, _sync=True)
            released = await wait_released(bus, run_id)
            assert released.state.data.pause is not None and released.state.data.pause.requested
            gate.write_text("open")
            await pauses.resume(bus, run_id, None, source="tests")
            done = await wait_final(bus, run_id, 60)
    finally:
        _remote.reset()
    assert done.state.name == "Completed" and done.run_count == 2
    assert await read_result(bus, done) == 4
    assert journal.read_text().split() == ["step", "waiting", "waiting"]


def test_a_poll_interval_that_is_not_a_number_is_refused() -> None:
    from flowbus.flow_runs import pause_flow_run

    for bad in ("10", None, float("nan")):
        with pytest.raises(ValueError, match="poll_interval must be a number of seconds"):
            pause_flow_run(poll_interval=bad)  # type: ignore[arg-type]
