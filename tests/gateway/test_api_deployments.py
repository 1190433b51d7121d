"""Deployments over the REST API: CRUD, pause/resume, their events, and asking for runs."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from gateway_helpers import problem, stored_events

from events.bus import Bus
from events.records import Deployment, flow_run_id_for
from events.settings import NatsSettings
from tests.live_runs import deploy_flows, greet, live

D = "/api/v1/deployments"


async def create(client: aiohttp.ClientSession, name: str = "etl", **fields: Any) -> dict[str, Any]:
    async with client.post(D, json={"name": name, "flow_name": "etl-flow", **fields}) as r:
        body = await r.json()
        assert r.status == 201, body
        return dict(body)


async def test_create_stores_the_deployment_and_emits_created(client: aiohttp.ClientSession, bus: Bus) -> None:
    made = await create(client, parameters={"day": "today"}, tags=["nightly"])
    kv = await bus.kv(bus.layout.deployments)
    stored = Deployment.model_validate(await kv.get_json("etl"))
    assert stored.id == made["id"] and stored.parameters == {"day": "today"}
    [event] = await stored_events(bus)
    assert event.type == "flowbus.deployment.created" and event.subject == "flowbus.deployment.etl"
    assert event.data["id"] == made["id"] and event.data["tags"] == ["nightly"]


async def test_duplicate_name_is_409(client: aiohttp.ClientSession) -> None:
    await create(client)
    async with client.post(D, json={"name": "etl", "flow_name": "x"}) as r:
        assert r.status == 409 and "already exists" in problem(await r.json(content_type=None))


@pytest.mark.parametrize(("body", "field"), [
    ({"flow_name": "f"}, "name"),
    ({"name": "has space", "flow_name": "f"}, "name"),
    ({"name": "ok", "flow_name": "f", "work_pool": "a.b"}, "work_pool"),
    ({"name": "ok", "flow_name": "f", "concurrency_limit": 0}, "concurrency_limit"),
    ({"name": "ok", "flow_name": "f", "id": "mine"}, "id"),
    ({"name": "ok", "flow_name": "f", "parameters": []}, "parameters"),
])
async def test_invalid_deployment_is_400_naming_the_field(client: aiohttp.ClientSession, body: dict[str, Any], field: str) -> None:
    async with client.post(D, json=body) as r:
        answer = await r.json(content_type=None)
        assert r.status == 400 and answer["errors"][0]["field"] == field, answer


async def test_non_json_bodies_are_refused(client: aiohttp.ClientSession) -> None:
    async with client.post(D, data=b"{nope", headers={"Content-Type": "application/json"}) as r:
        assert r.status == 400 and "not valid JSON" in problem(await r.json(content_type=None))
    async with client.post(D, data=b"name=x", headers={"Content-Type": "application/x-www-form-urlencoded"}) as r:
        assert r.status == 415
    async with client.post(D, data=b"") as r:
        assert r.status in (400, 415)
    async with client.post(D, json=[1, 2]) as r:
        assert r.status == 400


async def test_get_and_unknown_names(client: aiohttp.ClientSession) -> None:
    made = await create(client)
    async with client.get(f"{D}/etl") as r:
        assert (await r.json())["id"] == made["id"]
    for name in ("nope", "a%20b", "%2A", "x" * 300):
        async with client.get(f"{D}/{name}") as r:
            assert r.status == 404, name


async def test_list_is_paginated(client: aiohttp.ClientSession) -> None:
    for name in ("a", "b", "c"):
        await create(client, name)
    async with client.get(D, params={"limit": "2"}) as r:
        page = await r.json()
    assert [d["name"] for d in page["items"]] == ["a", "b"] and page["next_offset"] == 2
    assert page["total"] == 3
    async with client.get(D, params={"limit": "2", "offset": "2"}) as r:
        page = await r.json()
    assert [d["name"] for d in page["items"]] == ["c"] and page["next_offset"] is None
    for bad in ({"limit": "0"}, {"limit": "x"}, {"offset": "-1"}, {"colour": "red"}):
        async with client.get(D, params=bad) as r:
            assert r.status == 400, bad


async def test_update_changes_fields_and_emits_updated(client: aiohttp.ClientSession, bus: Bus) -> None:
    await create(client)
    async with client.patch(f"{D}/etl", json={"description": "nightly load", "tags": ["a"]}) as r:
        body = await r.json()
        assert r.status == 200 and body["description"] == "nightly load" and body["tags"] == ["a"]
    async with client.patch(f"{D}/etl", json={"work_pool": "bad pool"}) as r:
        assert r.status == 400 and "work_pool" in problem(await r.json(content_type=None))
    async with client.patch(f"{D}/etl", json={"name": "renamed"}) as r:
        assert r.status == 400
    async with client.patch(f"{D}/missing", json={"description": "x"}) as r:
        assert r.status == 404
    assert [e.type for e in await stored_events(bus)] == [
        "flowbus.deployment.created", "flowbus.deployment.updated"]


async def test_pause_resume_and_delete_emit_their_events(client: aiohttp.ClientSession, bus: Bus) -> None:
    await create(client)
    async with client.post(f"{D}/etl/pause") as r:
        assert (await r.json())["paused"] is True
    async with client.post(f"{D}/etl/resume") as r:
        assert (await r.json())["paused"] is False
    async with client.delete(f"{D}/etl") as r:
        assert r.status == 204
    async with client.get(f"{D}/etl") as r:
        assert r.status == 404
    events = await stored_events(bus)
    assert [e.type.rsplit(".", 1)[1] for e in events] == ["created", "paused", "resumed", "deleted"]
    assert events[1].data["paused"] is True


async def test_run_request_is_the_contract_event_and_answers_the_run_id_at_once(client: aiohttp.ClientSession, bus: Bus) -> None:
    await create(client)
    body = {"parameters": {"day": "mon"}, "tags": ["manual"], "name": "by-hand",
            "idempotency_key": "req-1"}
    async with client.post(f"{D}/etl/runs", json=body) as r:
        answer = await r.json()
        assert r.status == 202
    run_id = flow_run_id_for("manual", "flowbus/gateway", "req-1")
    assert answer["flow_run_id"] == run_id and answer["event_id"] == "req-1"
    async with client.post(f"{D}/etl/runs", json=body) as r:  # a retry: same run, one event
        assert (await r.json())["flow_run_id"] == run_id
    events = [e for e in await stored_events(bus) if e.type == "flowbus.deployment.run-requested"]
    assert len(events) == 1
    [event] = events
    assert (event.source, event.id, event.subject) == ("flowbus/gateway", "req-1", "flowbus.deployment.etl")
    assert event.data == {"deployment": "etl", "flow_run_id": run_id, "parameters": {"day": "mon"},
                          "tags": ["manual"], "name": "by-hand", "scheduled_start_time": None}


async def test_run_needs_no_body_when_nothing_is_overridden(client: aiohttp.ClientSession) -> None:
    await create(client)
    async with client.post(f"{D}/etl/runs") as r:
        assert r.status == 202 and (await r.json())["flow_run_id"]


async def test_run_of_unknown_deployment_is_404(client: aiohttp.ClientSession) -> None:
    async with client.post(f"{D}/ghost/runs", json={}) as r:
        assert r.status == 404


async def test_run_with_bad_input_is_400(client: aiohttp.ClientSession) -> None:
    await create(client)
    for body, params in (({"parameters": 3}, {}), ({"scheduled_start_time": "2024-01-01T00:00:00"}, {}),
                         ({}, {"wait": "-1"}), ({}, {"wait": "soon"})):
        async with client.post(f"{D}/etl/runs", json=body, params=params) as r:
            assert r.status == 400, (body, params)


async def test_run_with_wait_returns_the_final_state_and_result(
    client: aiohttp.ClientSession, bus: Bus, nats_settings: NatsSettings, tmp_path: Path
) -> None:
    await deploy_flows(bus, tmp_path / "code", greet("etl"))
    async with live(bus, nats_settings):  # the orchestrator creates the run, a runner runs it
        async with client.post(f"{D}/etl/runs", json={"parameters": {"name": "etl", "times": 2}},
                               params={"wait": "60"}) as r:
            answer = await r.json()
    assert r.status == 200 and answer["final"] is True, answer
    assert answer["state"]["name"] == "Completed" and answer["result"] == "Hello, etl!Hello, etl!"


async def test_run_with_wait_reports_a_failure_without_result(
    client: aiohttp.ClientSession, bus: Bus, nats_settings: NatsSettings, tmp_path: Path
) -> None:
    await deploy_flows(bus, tmp_path / "code", greet("etl"))
    async with live(bus, nats_settings):
        async with client.post(f"{D}/etl/runs", json={"parameters": {"times": -1}},
                               params={"wait": "60"}) as r:
            answer = await r.json()
    assert r.status == 200 and answer["state"]["name"] == "Failed", answer
    assert answer["result_available"] is False and answer["result"] is None


async def test_run_with_wait_that_runs_out_is_202_without_state(client: aiohttp.ClientSession) -> None:
    await create(client)
    async with client.post(f"{D}/etl/runs", json={}, params={"wait": "0.3"}) as r:
        answer = await r.json()
    assert r.status == 202 and answer["state"] is None and answer["final"] is False


async def test_run_with_wait_ends_when_the_gateway_shuts_down(start_gateway: Any, client: aiohttp.ClientSession) -> None:
    from gateway_helpers import ADMIN_KEY

    await create(client)
    started = asyncio.get_running_loop().time()
    async with start_gateway(drain_timeout_seconds=20) as gw:
        session = aiohttp.ClientSession(base_url=gw.url, headers={"Authorization": f"Bearer {ADMIN_KEY}"})
        waiting = asyncio.create_task(session.post(f"{D}/etl/runs", json={}, params={"wait": "30"}))
        await asyncio.sleep(0.3)
    response = await waiting
    assert response.status == 202 and (await response.json())["final"] is False
    assert asyncio.get_running_loop().time() - started < 10
    response.close()
    await session.close()


async def test_durable_tasks_is_on_by_default_and_can_be_turned_off(client: aiohttp.ClientSession, bus: Bus) -> None:
    assert (await create(client))["durable_tasks"] is True
    async with client.patch(f"{D}/etl", json={"durable_tasks": False}) as r:
        assert r.status == 200 and (await r.json())["durable_tasks"] is False
    kv = await bus.kv(bus.layout.deployments)
    assert Deployment.model_validate(await kv.get_json("etl")).durable_tasks is False
    assert (await create(client, "etl2", durable_tasks=False))["durable_tasks"] is False


@pytest.mark.parametrize("value", ["yes", "false", 1, 0, None, [], {"on": True}])
async def test_a_durable_tasks_value_that_is_not_a_boolean_is_refused(client: aiohttp.ClientSession, bus: Bus, value: Any) -> None:
    async with client.post(D, json={"name": "etl", "flow_name": "f", "durable_tasks": value}) as r:
        answer = await r.json(content_type=None)
        assert r.status == 400 and answer["errors"][0]["field"] == "durable_tasks", answer
        assert "must be true or false" in problem(answer), answer
    await create(client)
    async with client.patch(f"{D}/etl", json={"durable_tasks": value}) as r:
        answer = await r.json(content_type=None)
        assert r.status == 400 and "durable_tasks" in problem(answer), answer
        assert "must be true or false" in problem(answer), answer
    kv = await bus.kv(bus.layout.deployments)
    assert Deployment.model_validate(await kv.get_json("etl")).durable_tasks is True
