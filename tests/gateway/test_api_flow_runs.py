"""Flow runs over the REST API: filtered lists, get, cancel (carried out by the orchestrator), logs.

Runs are made by the product's own code: the orchestrator's run creation, a runner,
and the API's cancel answered by an orchestrator's control desk.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from gateway_helpers import problem, stored_events

from events import control
from events.bus import Bus
from events.control import ControlReply, ControlRequest
from events.logrecords import run_log_record
from events.records import FlowRun
from events.settings import NatsSettings
from orchestrator.control import ControlDesk
from tests.created_runs import T0, created_run
from tests.runners.runner_helpers import (
    deploy,
    runner_settings,
    running,
    schedule,
    wait_final,
    wait_state,
)
from tests.shutdown import wait_stopped

R = "/api/v1/flow-runs"

BLOCKED = """
import time
from pathlib import Path
from flowbus import flow

@flow
def blocked(release: str) -> None:
    while not Path(release).exists():
        time.sleep(0.05)
"""


async def test_list_filters_by_deployment_state_and_time(client: aiohttp.ClientSession, bus: Bus) -> None:
    await created_run(bus, "r1", deployment="etl", created=T0)
    await created_run(bus, "r2", deployment="etl", created=T0 + timedelta(hours=1),
                      refused="parameters do not fit")
    await created_run(bus, "r3", deployment="other", created=T0 + timedelta(hours=2))

    async def ids(**params: str) -> list[str]:
        async with client.get(R, params=params) as r:
            assert r.status == 200, await r.text()
            return [run["id"] for run in (await r.json())["items"]]

    assert await ids() == ["r3", "r2", "r1"]
    assert await ids(deployment="etl") == ["r2", "r1"]
    assert await ids(state="Scheduled") == ["r3", "r1"]
    assert await ids(state="Failed") == ["r2"]
    assert await ids(since=(T0 + timedelta(minutes=30)).isoformat(),
                     until=(T0 + timedelta(minutes=90)).isoformat()) == ["r2"]
    assert await ids(limit="1", offset="1") == ["r2"]


@pytest.mark.parametrize("params", [{"state": "Exploded"}, {"since": "yesterday"},
                                    {"since": "2026-01-01T00:00:00"}, {"limit": "100000"}])
async def test_bad_filters_are_400(client: aiohttp.ClientSession, params: dict[str, str]) -> None:
    async with client.get(R, params=params) as r:
        assert r.status == 400 and problem(await r.json(content_type=None))


async def test_get_a_run_and_unknown_ids(client: aiohttp.ClientSession, bus: Bus) -> None:
    await created_run(bus, "r1")
    async with client.get(f"{R}/r1") as r:
        assert (await r.json())["state"]["name"] == "Scheduled"
    for run_id in ("nope", "a.b.", "%3E"):
        async with client.get(f"{R}/{run_id}") as r:
            assert r.status == 404


async def test_cancel_of_a_run_its_runner_holds_moves_it_to_cancelling_and_emits_the_event(
    client: aiohttp.ClientSession, bus: Bus, desk: ControlDesk, nats_settings: NatsSettings,
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FLOWBUS_RUNNER_CODE_ROOT", str(tmp_path))
    (tmp_path / "blocked.py").write_text(BLOCKED)
    release = tmp_path / "release"
    deployment = await deploy(bus, "etl", "blocked.py:blocked", parameters={"release": str(release)})
    try:
        async with running(bus, nats_settings, runner_settings(limit=1)):
            run_id = await schedule(bus, deployment)
            await wait_state(bus, run_id, "Running", max_wait=30)
            async with client.post(f"{R}/{run_id}/cancel") as r:
                body = await r.json()
                assert r.status == 200 and body["state"]["name"] == "Cancelling"
            [event] = [e for e in await stored_events(bus)
                       if e.type == "flowbus.flow-run.Cancelling"]
            assert event.subject == f"flowbus.flow-run.{run_id}"
            assert event.data["state"]["name"] == "Cancelling" and event.data["deployment"] == "etl"
            # Its runner then stops it and records Cancelled.
            assert (await wait_final(bus, run_id, max_wait=30)).state.name == "Cancelled"
    finally:
        release.touch()


async def test_cancel_of_a_scheduled_run_no_runner_holds_cancels_it_at_once(
    client: aiohttp.ClientSession, bus: Bus, desk: ControlDesk
) -> None:
    await created_run(bus, "r1")
    async with client.post(f"{R}/r1/cancel") as r:
        assert r.status == 200 and (await r.json())["state"]["name"] == "Cancelled"
    assert "flowbus.flow-run.Cancelled" in [e.type for e in await stored_events(bus)]


async def test_cancel_of_a_finished_run_is_409_saying_why(
    client: aiohttp.ClientSession, bus: Bus, desk: ControlDesk
) -> None:
    await created_run(bus, "r1", refused="parameters do not fit")
    async with client.post(f"{R}/r1/cancel") as r:
        assert r.status == 409 and "Failed" in problem(await r.json(content_type=None))
    async with client.post(f"{R}/ghost/cancel") as r:
        assert r.status == 404
    # The orchestrator refused the first; the unknown run was answered by the gateway.
    assert desk.metrics.registry.get_sample_value(
        "flowbus_orchestrator_control_requests_total", {"action": "cancel", "outcome": "conflict"}) == 1


async def test_without_an_orchestrator_cancel_and_resume_answer_503_and_change_nothing(
    client: aiohttp.ClientSession, bus: Bus
) -> None:
    await created_run(bus, "r1")
    before = await stored_events(bus)
    for action, body in (("cancel", None), ("resume", {})):
        async with client.post(f"{R}/r1/{action}", json=body) as r:
            assert r.status == 503, await r.text()
            assert "orchestrator" in problem(await r.json(content_type=None))
            assert r.headers["Retry-After"]
    kv = await bus.kv(bus.layout.flow_runs)
    assert FlowRun.model_validate(await kv.get_json("r1")).state.name == "Scheduled"
    assert await stored_events(bus) == before


async def test_an_orchestrator_that_does_not_answer_in_time_is_503_not_a_hang(
    client: aiohttp.ClientSession, bus: Bus
) -> None:
    await created_run(bus, "r1")
    release = asyncio.Event()

    async def frozen(request: ControlRequest) -> ControlReply:
        await release.wait()  # an orchestrator that took the request and never answers
        return ControlReply(outcome="busy")

    async with control.answering(bus, frozen):
        try:
            async with asyncio.timeout(60):  # a hang check only: the answer comes after ~5 s
                async with client.post(f"{R}/r1/cancel") as r:
                    assert r.status == 503, await r.text()
                    assert "within" in problem(await r.json(content_type=None))
        finally:
            release.set()


async def publish_logs(bus: Bus, run_id: str, messages: list[str]) -> None:
    records = [run_log_record(flow_run_id=run_id, name="flowbus.flow_runs", level=logging.INFO,
                              message=m, timestamp=T0) for m in messages]
    await bus.publish_raw(bus.layout.logs_subject(run_id), json.dumps(records).encode())


async def test_logs_are_read_from_the_logs_stream(client: aiohttp.ClientSession, bus: Bus) -> None:
    await created_run(bus, "r1")
    await publish_logs(bus, "r1", ["one", "two"])
    await publish_logs(bus, "other", ["not mine"])
    await publish_logs(bus, "r1", ["three"])
    async with client.get(f"{R}/r1/logs") as r:
        body = await r.json()
    assert [line["message"] for line in body["items"]] == ["one", "two", "three"]
    async with client.get(f"{R}/r1/logs", params={"limit": "2"}) as r:
        assert len((await r.json())["items"]) == 2
    info = await bus.consumers(bus.layout.logs_stream)
    assert info == []  # the temporary reader is gone


async def test_logs_follow_streams_until_the_run_ends(
    client: aiohttp.ClientSession, bus: Bus, desk: ControlDesk
) -> None:
    await created_run(bus, "r1")
    await publish_logs(bus, "r1", ["started"])

    async def runner() -> None:
        await asyncio.sleep(0.3)
        await publish_logs(bus, "r1", ["working", "done"])
        await asyncio.sleep(0.3)
        async with client.post(f"{R}/r1/cancel") as r:  # the run ends: Cancelled
            assert r.status == 200, await r.text()

    task = asyncio.create_task(runner())
    lines: list[dict[str, Any]] = []
    async with client.get(f"{R}/r1/logs", params={"follow": "true"}) as r:
        assert r.headers["Content-Type"] == "application/x-ndjson"
        async for raw in r.content:
            lines.append(json.loads(raw))
    await wait_stopped(task, what="the log writer")
    assert [line["message"] for line in lines] == ["started", "working", "done"]


async def test_logs_of_unknown_run_is_404(client: aiohttp.ClientSession) -> None:
    async with client.get(f"{R}/ghost/logs", params={"follow": "true"}) as r:
        assert r.status == 404
