"""The API's cancel and resume as control requests: only the leading orchestrator answers,
it writes the record, and it refuses what it should (events/control.py)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from events import control
from events.bus import Bus
from events.control import ControlReply, ControlRequest
from events.embedded import EmbeddedNats
from events.records import FlowRun
from events.runs import RunRequested, run_requested_event
from events.settings import NatsSettings
from runners.claims import claimed
from tests.orchestrator.support import deploy, flow_runs, start, wait_until

TTL = 2.0


@pytest.fixture
async def short_lease_bus(nats_server: EmbeddedNats, nats_settings: NatsSettings) -> AsyncIterator[Bus]:
    bus = await Bus.connect(nats_settings.model_copy(update={"lease_ttl_seconds": TTL}))
    try:
        yield bus
    finally:
        await bus.destroy_layout()
        await bus.close()


async def _requested_run(bus: Bus) -> str:
    """A Scheduled run the orchestrator created from a run request (its id)."""
    event = run_requested_event(RunRequested(deployment="hello"), source="test",
                                event_id=str(uuid.uuid4()))
    run_id = str(event.data["flow_run_id"])
    await bus.publish(event)

    async def created() -> bool:
        return run_id in {r.id for r in await flow_runs(bus)}

    await wait_until(created, 30)
    return run_id


async def _record(bus: Bus, run_id: str) -> FlowRun:
    entry = await (await bus.kv(bus.layout.flow_runs)).get(run_id)
    assert entry is not None
    return FlowRun.model_validate_json(entry.value)


async def test_only_the_leader_answers_and_a_standby_takes_over(short_lease_bus: Bus) -> None:
    bus = short_lease_bus
    await deploy(bus)
    first = await start(bus, identity="first")
    second_task = asyncio.create_task(start(bus, identity="second"))
    run_id = await _requested_run(bus)
    reply = await control.ask(bus, ControlRequest(action="cancel", flow_run_id=run_id))
    assert reply.outcome == "ok" and reply.run is not None
    # No runner holds it yet: Cancelled at once, as Prefect does (FlowRun.cancel).
    assert reply.run.state.name == "Cancelled"
    assert (await _record(bus, run_id)).state.name == "Cancelled"
    assert not second_task.done()  # the standby neither leads nor answers

    await first.close()  # a clean stop: the standby takes over and answers
    second = await asyncio.wait_for(second_task, TTL * 4)
    try:
        other = await _requested_run(bus)
        reply = await control.ask(bus, ControlRequest(action="cancel", flow_run_id=other))
        assert reply.outcome == "ok"
        for orch, count in ((first.orch, 1), (second.orch, 1)):
            assert orch.metrics.registry.get_sample_value(
                "flowbus_orchestrator_control_requests_total",
                {"action": "cancel", "outcome": "ok"}) == count
    finally:
        await second.close()
    # No orchestrator left: the asker learns it at once instead of waiting.
    with pytest.raises(control.NoController, match="no orchestrator"):
        await control.ask(bus, ControlRequest(action="cancel", flow_run_id=other))


async def test_refusals_and_hostile_requests_leave_runs_alone(bus: Bus) -> None:
    await deploy(bus)
    running = await start(bus)
    try:
        run_id = await _requested_run(bus)
        answers = {
            "unknown": await control.ask(bus, ControlRequest(action="cancel", flow_run_id="ghost")),
            "not paused": await control.ask(bus, ControlRequest(action="resume", flow_run_id=run_id)),
            "input": await control.ask(bus, ControlRequest(action="resume", flow_run_id=run_id,
                                                           run_input={"x": 1})),
            "no task run": await control.ask(bus, ControlRequest(action="cancel-task-run",
                                                                 task_run_id="ghost")),
        }
        assert answers["no task run"].outcome == "not_found"
        assert answers["unknown"].outcome == "not_found"
        assert answers["not paused"].outcome == "conflict"
        assert "Scheduled" in answers["not paused"].detail
        assert answers["input"].outcome == "conflict"
        # Malformed requests, as any client of the subject could send them: answered, refused.
        subject = control.request_subject(bus.layout.namespace)
        for raw in (b"not json", b"[1]", b'{"action": "complete", "flow_run_id": "' + run_id.encode() + b'"}',
                    b'{"action": "cancel", "flow_run_id": ">"}',
                    b'{"action": "cancel", "flow_run_id": "' + run_id.encode() + b'", "state": "Completed"}',
                    b'{"action": "cancel", "flow_run_id": "' + run_id.encode() + b'", "source": "/evil"}',
                    # a task-run cancel naming a flow run, and a flow-run cancel naming both
                    b'{"action": "cancel-task-run", "flow_run_id": "' + run_id.encode() + b'"}',
                    b'{"action": "cancel", "flow_run_id": "' + run_id.encode() + b'", "task_run_id": "t"}',
                    b'{"action": "resume", "flow_run_id": "x", "run_input": ' + b'{"a": ' * 200
                    + b"1" + b"}" * 201, b"\xff\xfe"):
            msg = await bus._nc.request(subject, raw, timeout=10)
            reply = ControlReply.model_validate_json(msg.data)
            assert reply.outcome == "invalid", (raw[:60], reply)
        assert (await _record(bus, run_id)).state.name == "Scheduled"
        # ... and the orchestrator still answers.
        reply = await control.ask(bus, ControlRequest(action="cancel", flow_run_id=run_id))
        assert reply.outcome == "ok"
        assert json.loads(msg.data)["detail"]
    finally:
        await running.close()


async def test_a_run_a_runner_holds_becomes_cancelling_and_a_second_cancel_is_refused(bus: Bus) -> None:
    await deploy(bus)
    running = await start(bus)
    try:
        run_id = await _requested_run(bus)
        kv = await bus.kv(bus.layout.flow_runs)
        _, held = claimed(await _record(bus, run_id), "runner-1", datetime.now(UTC))
        await kv.put(run_id, held.model_dump_json().encode())
        reply = await control.ask(bus, ControlRequest(action="cancel", flow_run_id=run_id))
        assert reply.outcome == "ok" and reply.run is not None
        assert reply.run.state.name == "Cancelling" and reply.run.runner_id == "runner-1"
        again = await control.ask(bus, ControlRequest(action="cancel", flow_run_id=run_id))
        assert again.outcome == "conflict" and "Cancelling" in again.detail
        assert (await _record(bus, run_id)).state.name == "Cancelling"
    finally:
        await running.close()
