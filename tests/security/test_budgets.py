"""Finding 4: templates and CEL have budgets; a costly definition is refused at creation,
and an evaluation over budget fails that one firing, never the part."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import aiohttp
import pytest

from events import templates
from events.bus import Bus
from events.embedded import free_port
from events.settings import NatsSettings
from events.templates import TemplateError, render_value_async
from gateway.service import RunningGateway
from tests.security.conftest import poll

LOOPS = "{% for a in range(10000) %}{% for b in range(10000) %}{% endfor %}{% endfor %}"
CE = "application/cloudevents+json"
# LOOPS trips whichever budget comes first: 100000 iterations on a fast machine, 50 ms on a
# loaded one. Either refusal is the behaviour under test.
OVER_BUDGET = ("over 50 ms", "limited to 100000 iterations")


@pytest.mark.parametrize("template", [
    "{{ 'x' * 10**8 }}", "{{ 'x' * 100000000 }}", "{{ 'x'|center(1000000000) }}",
    "{{ 2 ** 100000 }}", "{{ '{:>999999999}'.format(1) }}",
])
async def test_a_template_bomb_is_refused_when_the_webhook_is_created(
    admin: aiohttp.ClientSession, template: str
) -> None:
    started = time.perf_counter()
    async with admin.post("/api/v1/webhooks", json={
            "slug": "bomb", "verifier": "none", "template": {"type": "a.b", "data": template}}) as r:
        body = await r.json()
    assert r.status == 400 and "not allowed" in body["detail"], body
    assert time.perf_counter() - started < 5  # the finding: seconds to minutes, ~95 MB


async def test_a_looping_template_fails_its_delivery_and_the_gateway_keeps_answering(
    admin: aiohttp.ClientSession, gateway: RunningGateway
) -> None:
    async with admin.post("/api/v1/webhooks", json={
            "slug": "loops", "verifier": "none", "template": {"type": "a.b", "data": LOOPS}}) as r:
        assert r.status == 201
    async with admin.post("/api/v1/webhooks", json={
            "slug": "lorem", "verifier": "none",
            "template": {"type": "a.b", "data": "{{ lipsum(10**5) }}"}}) as r:
        assert r.status == 201
    async with aiohttp.ClientSession(base_url=gateway.url) as outside:
        health = asyncio.create_task(_health_times(outside))
        for _ in range(3):
            async with outside.post("/hooks/loops", json={}) as r:
                body = await r.json()
                assert r.status == 400 and any(m in body["detail"] for m in OVER_BUDGET), body
        async with outside.post("/hooks/lorem", json={}) as r:
            assert r.status == 400 and "'lipsum' is undefined" in (await r.json())["detail"]
        slowest = await health
    # Loose bound (shared, loaded machine); bench/hostile.py measures it properly.
    assert slowest < 2.0


async def test_a_costly_template_renders_while_the_event_loop_keeps_running() -> None:
    turns = 0
    rendering = True

    async def other_work() -> None:
        nonlocal turns
        while rendering:
            turns += 1
            await asyncio.sleep(0)

    worker = asyncio.create_task(other_work())
    await asyncio.sleep(0)
    started = turns
    with pytest.raises(TemplateError, match=r"over 50 ms|limited to 100000 iterations"):
        await render_value_async({"data": LOOPS}, {})
    during = turns - started
    rendering = False
    await worker
    # The render spent its whole 50 ms budget; the loop ran other work meanwhile (in
    # the loop, the render would have held it: not one turn).
    assert during > 1


async def test_an_evaluation_past_its_hard_deadline_fails_that_evaluation(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(templates, "MAX_WAIT_SECONDS", 0.001)
    with pytest.raises(TemplateError, match="did not finish within"):
        await render_value_async({"data": LOOPS}, {})
    # Without a template nothing goes to a thread: no deadline to miss.
    assert await render_value_async({"data": "plain", "n": 3}, {}) == {"data": "plain", "n": 3}


async def _health_times(session: aiohttp.ClientSession) -> float:
    slowest = 0.0
    for _ in range(10):
        started = time.perf_counter()
        async with session.get("/healthz") as r:
            assert r.status == 200
        slowest = max(slowest, time.perf_counter() - started)
        await asyncio.sleep(0.02)
    return slowest


async def test_nested_cel_macros_are_422_at_the_api(admin: aiohttp.ClientSession, bus: Bus) -> None:
    when = "event.data.xs.all(x, event.data.xs.exists(y, y == x))"
    async with admin.post("/api/v1/deployments", json={
            "name": "cel", "flow_name": "cel", "entrypoint": "flows.py:greet",
            "triggers": [{"expect": ["com.example.x"], "when": when}]}) as r:
        body = await r.json()
        assert r.status == 422 and body["errors"][0]["field"] == "triggers.0", body
        assert "nests a macro" in body["detail"]
    assert await (await bus.kv(bus.layout.deployments)).get("cel") is None


@pytest.mark.usefixtures("plane")
async def test_a_trigger_over_its_template_budget_fails_that_firing_only(
    admin: aiohttp.ClientSession, bus: Bus
) -> None:
    for name, parameters in (("heavy", {"name": LOOPS}), ("light", {"name": "{{ event.id }}"})):
        async with admin.post("/api/v1/deployments", json={
                "name": name, "flow_name": "greet", "entrypoint": "flows.py:greet",
                "triggers": [{"expect": [f"com.example.{name}"], "parameters": parameters}]}) as r:
            assert r.status == 201, await r.text()
    failures = await bus.consumer(f"f-{uuid.uuid4().hex[:6]}")
    for name in ("heavy", "light"):
        async with admin.post("/events", json={
                "specversion": "1.0", "id": name, "source": "/t", "type": f"com.example.{name}"},
                headers={"Content-Type": CE}) as r:
            assert r.status == 202

    seen: list[Any] = []

    async def failed() -> Any:
        seen.extend(d.event for d in await failures.fetch(50, max_wait=0.2))
        return [e for e in seen if e.type == "flowbus.automation.action.failed"]

    [failure] = await poll(failed, what="the failed firing")
    assert "over 50 ms" in str(failure.data) or "iterations" in str(failure.data)
    await failures.close()
    # The orchestrator went on: the light trigger's run exists (created by the trigger).
    runs = await bus.kv(bus.layout.flow_runs)
    await poll(lambda: runs.keys(), what="the light trigger's run")
    assert len(await runs.keys()) == 1


async def test_a_when_over_its_budget_is_a_dead_letter_and_a_count(
    admin: aiohttp.ClientSession, bus: Bus, nats_settings: NatsSettings
) -> None:
    from orchestrator.service import serve
    from orchestrator.settings import OrchestratorSettings

    port = free_port()
    ready, stop = asyncio.Event(), asyncio.Event()
    orchestrator = asyncio.create_task(serve(
        nats_settings, OrchestratorSettings(fetch_wait_seconds=0.2, metrics_port=port),
        ready=ready, stop=stop))
    try:
        await asyncio.wait_for(ready.wait(), 30)
        async with admin.post("/api/v1/deployments", json={
                "name": "cel", "flow_name": "greet", "entrypoint": "flows.py:greet",
                "triggers": [{"expect": ["com.example.cel"],
                              "when": "event.data.xs.exists(x, x == 1)"}]}) as r:
            assert r.status == 201, await r.text()
        failures = await bus.consumer(f"f-{uuid.uuid4().hex[:6]}")
        for name, size in (("big", 257), ("small", 3)):
            async with admin.post("/events", json={
                    "specversion": "1.0", "id": name, "source": "/t", "type": "com.example.cel",
                    "data": {"xs": list(range(size))}}, headers={"Content-Type": CE}) as r:
                assert r.status == 202

        seen: list[Any] = []

        async def failed() -> Any:
            seen.extend(d.event for d in await failures.fetch(50, max_wait=0.2))
            return [e for e in seen if e.type == "flowbus.automation.action.failed"]

        [failure] = await poll(failed, what="the dead letter of the 'when' over budget")
        assert failure.data["kind"] == "when_over_budget" and failure.data["event"] == "big"
        assert failure.data["deployment"] == "cel" and "over 256 items" in failure.data["reason"]
        await failures.close()
        # The small list was evaluated: its run exists, and only its run.
        runs = await bus.kv(bus.layout.flow_runs)
        await poll(lambda: runs.keys(), what="the run of the small list")
        assert len(await runs.keys()) == 1
        async with aiohttp.ClientSession() as session, \
                session.get(f"http://127.0.0.1:{port}/metrics") as r:
            text = await r.text()
        assert 'flowbus_orchestrator_action_failures_total{reason="when_over_budget"} 1.0' in text
    finally:
        stop.set()
        await asyncio.wait_for(orchestrator, 60)
