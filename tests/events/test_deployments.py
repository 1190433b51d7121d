"""Registering deployments, asking for runs, waiting for them, cancelling them."""

from __future__ import annotations

import asyncio
import json

import pytest

from events import deployments as d
from events.bus import Bus
from events.errors import NotFound, TransitionRejected
from events.records import Deployment, FlowRun, State
from tests.shutdown import wait_stopped
from tests.stored import stored_types


async def test_save_creates_then_updates_keeping_identity(bus: Bus) -> None:
    first, created = await d.save_deployment(bus, Deployment(name="etl", flow_name="etl"))
    assert created
    await d.set_paused(bus, "etl", True)
    second, created = await d.save_deployment(bus, Deployment(name="etl", flow_name="etl", version="2"))
    assert not created
    assert (second.id, second.created, second.paused, second.version) == (first.id, first.created, True, "2")
    assert [x.name for x in await d.list_deployments(bus)] == ["etl"]
    assert await stored_types(bus) == ["flowbus.deployment.created", "flowbus.deployment.paused",
                                       "flowbus.deployment.updated"]


async def test_unknown_deployment_is_named(bus: Bus) -> None:
    with pytest.raises(NotFound, match="deployment 'nope' not found"):
        await d.get_deployment(bus, "nope")
    with pytest.raises(NotFound, match="'nope'"):
        await d.set_paused(bus, "nope", True)


async def test_delete_announces(bus: Bus) -> None:
    await d.save_deployment(bus, Deployment(name="gone", flow_name="f"))
    await d.delete_deployment(bus, "gone")
    assert await d.list_deployments(bus) == []
    assert (await stored_types(bus))[-1] == "flowbus.deployment.deleted"


async def test_request_run_with_a_key_maps_to_one_run(bus: Bus) -> None:
    a = await d.request_run(bus, "etl", {"x": 1}, source="/t", idempotency_key="k1")
    b = await d.request_run(bus, "etl", {"x": 1}, source="/t", idempotency_key="k1")
    c = await d.request_run(bus, "etl", {"x": 1}, source="/t")
    assert a == b != c
    consumer = await bus.consumer("r")
    requests = []
    for _ in range(20):  # a loaded machine may hand them over in several fetches
        requests += [x.event for x in await consumer.fetch(10, max_wait=0.5)]
        if len(requests) >= 2:
            break
    requests += [x.event for x in await consumer.fetch(10, max_wait=0.5)]  # nothing more
    assert len(requests) == 2
    assert requests[0].data["parameters"] == {"x": 1} and requests[0].data["flow_run_id"] == a


async def test_wait_returns_at_the_final_state_with_its_result(bus: Bus) -> None:
    kv = await bus.kv(bus.layout.flow_runs)
    run = FlowRun(id="r1", name="r", flow_name="f", state=State.named("Scheduled"))
    await kv.create(run.id, run.model_dump_json().encode())

    async def runner() -> None:
        current = run
        for name in ("Pending", "Running", "Completed"):
            await asyncio.sleep(0.05)
            current = current.transition(State.named(name))
            await kv.put(run.id, current.model_dump_json().encode())
        store = await bus.objects(bus.layout.results)
        await store.put(run.id, json.dumps({"serializer": "json", "value": [1, 2]}).encode())

    task = asyncio.create_task(runner())
    final = await d.wait_flow_run(bus, "r1", max_wait=5)
    await wait_stopped(task, what="the state writer")
    assert final is not None and final.state.name == "Completed"
    assert await d.read_result(bus, final) == [1, 2]


async def test_wait_times_out_with_the_latest_state(bus: Bus) -> None:
    kv = await bus.kv(bus.layout.flow_runs)
    run = FlowRun(id="r2", name="r", flow_name="f", state=State.named("Running"))
    await kv.create(run.id, run.model_dump_json().encode())
    latest = await d.wait_flow_run(bus, "r2", max_wait=0.3)
    assert latest is not None and latest.state.name == "Running"
    assert await d.wait_flow_run(bus, "absent", max_wait=0.2) is None


async def test_cancel_running_and_scheduled_runs(bus: Bus) -> None:
    kv = await bus.kv(bus.layout.flow_runs)
    for run_id, state in (("run", "Running"), ("sched", "Scheduled"), ("done", "Completed")):
        run = FlowRun(id=run_id, name=run_id, flow_name="f", state=State.named(state))
        await kv.create(run_id, run.model_dump_json().encode())
    assert (await d.request_cancel(bus, "run")).state.name == "Cancelling"
    assert (await d.request_cancel(bus, "sched")).state.name == "Cancelled"
    with pytest.raises(TransitionRejected, match="final state"):
        await d.request_cancel(bus, "done")
    with pytest.raises(NotFound):
        await d.request_cancel(bus, "absent")
