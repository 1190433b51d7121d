"""Every /metrics output passes `promtool check metrics`, and counts what happened."""

from __future__ import annotations

import asyncio

import aiohttp

from events.embedded import free_port
from events.settings import NatsSettings
from gateway.service import serve as serve_gateway
from gateway.settings import GatewaySettings
from orchestrator.service import serve as serve_orchestrator
from orchestrator.settings import OrchestratorSettings
from tests.shutdown import stop_service

from .conftest import check_metrics

CLOUDEVENT = {"specversion": "1.0", "id": "m-1", "source": "/metrics-test", "type": "com.example.metrics",
              "data": {"n": 1}}


async def test_gateway_metrics_are_valid_and_count_events(
    nats_settings: NatsSettings, promtool: str
) -> None:
    stop, ready = asyncio.Event(), asyncio.Event()
    urls: list[str] = []
    task = asyncio.create_task(serve_gateway(
        nats_settings, GatewaySettings(port=0, auth=False), ready=ready, stop=stop,
        announce=urls.append))
    try:
        await asyncio.wait_for(ready.wait(), 10)
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{urls[0]}/events", json=CLOUDEVENT,
                                 headers={"content-type": "application/cloudevents+json"}) as r:
                assert r.status == 202
            async with http.post(f"{urls[0]}/events", data=b"{bad",
                                 headers={"content-type": "application/cloudevents+json"}) as r:
                assert r.status == 400
            async with http.get(f"{urls[0]}/metrics") as r:
                text = await r.text()
    finally:
        await stop_service(stop, task, what="the gateway")
    assert check_metrics(promtool, text) == ""
    assert "flowbus_gateway_events_accepted_total" in text
    assert "flowbus_gateway_events_rejected_total" in text
    assert "flowbus_gateway_request_seconds_bucket" in text
    assert 'flowbus_gateway_publish_seconds_count{kind="single"} 1.0' in text


async def test_orchestrator_metrics_are_valid(nats_settings: NatsSettings, promtool: str) -> None:
    port = free_port()
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(serve_orchestrator(
        nats_settings, OrchestratorSettings(metrics_port=port), ready=ready, stop=stop))
    try:
        await asyncio.wait_for(ready.wait(), 15)
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/metrics") as r:
            text = await r.text()
    finally:
        await stop_service(stop, task, what="the orchestrator")
    assert check_metrics(promtool, text) == ""
    for name in ("flowbus_orchestrator_leader", "flowbus_orchestrator_event_to_job_seconds_bucket",
                 "flowbus_orchestrator_consumer_pending", "flowbus_orchestrator_consumer_ack_pending",
                 "flowbus_orchestrator_concurrency_slots_in_use",
                 "flowbus_orchestrator_runs_waiting_for_slot",
                 "flowbus_orchestrator_trigger_evaluations_total",
                 "flowbus_automation_dead_letters_waiting", "flowbus_automation_actions_total"):
        assert name in text, name
    assert 'le="3600.0"' in text  # buckets reach hours


def test_the_check_catches_a_badly_named_counter(promtool: str) -> None:
    bad = "# HELP jobs_seconds x\n# TYPE jobs_seconds counter\njobs_seconds 1\n"
    assert "_total" in check_metrics(promtool, bad)


async def test_runner_metrics_server_answers_liveness_and_valid_metrics(promtool: str) -> None:
    from runners.metrics import RunnerMetrics, bound_port, start_metrics_server

    metrics = RunnerMetrics(pool="gpu")
    site = await start_metrics_server(metrics, "127.0.0.1", 0)
    try:
        base = f"http://127.0.0.1:{bound_port(site)}"
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/healthz") as r:
                assert r.status == 200
            async with http.get(f"{base}/metrics") as r:
                text = await r.text()
    finally:
        await site.cleanup()
    assert check_metrics(promtool, text) == ""
    assert 'flowbus_runner_free_slots{pool="gpu"}' in text
    assert "# TYPE flowbus_sdk_task_runs_total counter" in text  # the SDK sink view is served too
