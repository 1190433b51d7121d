"""Registering deployments, asking for runs, waiting for them, cancelling them.

The runs these functions read are the product's: made by the orchestrator's run
creation (tests.created_runs, or a request the orchestrator serves) and carried out
by a runner in this process (tests.live_runs).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from events import deployments as d
from events.bus import Bus
from events.errors import NotFound, TransitionRejected
from events.records import Deployment
from events.settings import NatsSettings
from tests.created_runs import created_run
from tests.live_runs import deploy_flows, greet, hold, let_go, live, wait_running
from tests.runners.runner_helpers import wait_final
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


async def test_wait_returns_at_the_final_state_with_its_result(
    bus: Bus, nats_settings: NatsSettings, tmp_path: Path
) -> None:
    await deploy_flows(bus, tmp_path / "code", greet("etl"))
    async with live(bus, nats_settings):  # the orchestrator creates the run, a runner runs it
        run_id = await d.request_run(bus, "etl", {"name": "you", "times": 2}, source="/t")
        final = await d.wait_flow_run(bus, run_id, max_wait=60)
    assert final is not None and final.state.name == "Completed"
    assert await d.read_result(bus, final) == "Hello, you!Hello, you!"


async def test_wait_times_out_with_the_latest_state(bus: Bus) -> None:
    await created_run(bus, "r2")  # Scheduled: no runner takes it here
    latest = await d.wait_flow_run(bus, "r2", max_wait=0.3)
    assert latest is not None and latest.state.name == "Scheduled"
    assert await d.wait_flow_run(bus, "absent", max_wait=0.2) is None


async def test_cancel_running_and_scheduled_runs(
    bus: Bus, nats_settings: NatsSettings, tmp_path: Path
) -> None:
    await created_run(bus, "sched")
    await created_run(bus, "done", refused="parameters do not fit")  # stored Failed
    assert (await d.request_cancel(bus, "sched")).state.name == "Cancelled"
    with pytest.raises(TransitionRejected, match="final state"):
        await d.request_cancel(bus, "done")
    with pytest.raises(NotFound):
        await d.request_cancel(bus, "absent")
    release = tmp_path / "release"
    await deploy_flows(bus, tmp_path / "code", hold(release))
    async with live(bus, nats_settings):
        try:
            run_id = await d.request_run(bus, "held", {}, source="/t")
            await wait_running(bus, run_id)
            # Its runner holds it: Cancelling until the runner has stopped the flow.
            assert (await d.request_cancel(bus, run_id)).state.name == "Cancelling"
            assert (await wait_final(bus, run_id, max_wait=60)).state.name == "Cancelled"
        finally:
            await let_go(release)
