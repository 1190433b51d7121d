"""A real Prometheus scrapes a running `flowbus dev` after a few flows ran, and PromQL
over its HTTP API returns the expected counts, a latency histogram, and an answer to
every dashboard query."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from events.embedded import free_port

from .test_dashboard_and_alerts import dashboard_queries

ROOT = Path(__file__).resolve().parents[2]
RUNS = 3


@pytest.fixture
async def dev_with_metrics(tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    ports = {"orchestrator": free_port(), "runner": free_port()}
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWBUS_")}
    env.update(FLOWBUS_HOME=str(tmp_path / "home"),
               FLOWBUS_ORCHESTRATOR_METRICS_PORT=str(ports["orchestrator"]),
               FLOWBUS_RUNNER_METRICS_PORT=str(ports["runner"]))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "flowbus.cli", "dev", "--nats-port", "0", "--gateway-port", "0",
        "--project", "examples/hello", cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    assert proc.stdout is not None
    text = ""
    try:
        async with asyncio.timeout(60):
            while "flowbus dev is ready" not in text:
                line = (await proc.stdout.readline()).decode()
                assert line, "flowbus dev exited early:\n" + text
                text += line
        gateway = re.search(r"gateway +(http://\S+)", text)
        assert gateway
        yield {"gateway": gateway.group(1), **ports}
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(proc.communicate(), 30)
        except TimeoutError:
            proc.kill()


@pytest.fixture
async def prometheus(prometheus_bin: str, tmp_path: Path,
                     dev_with_metrics: dict[str, Any]) -> AsyncIterator[str]:
    gateway_host = dev_with_metrics["gateway"].removeprefix("http://")
    config = tmp_path / "prometheus.yml"
    config.write_text(f"""
global: {{scrape_interval: 1s, evaluation_interval: 1s}}
scrape_configs:
  - job_name: gateway
    static_configs: [{{targets: ["{gateway_host}"]}}]
  - job_name: orchestrator
    static_configs: [{{targets: ["127.0.0.1:{dev_with_metrics['orchestrator']}"]}}]
  - job_name: runner
    static_configs: [{{targets: ["127.0.0.1:{dev_with_metrics['runner']}"]}}]
""")
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        prometheus_bin, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http, asyncio.timeout(30):
            while True:
                try:
                    async with http.get(f"{url}/-/ready") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 15)


async def query(http: aiohttp.ClientSession, prometheus: str, expr: str) -> list[dict[str, Any]]:
    async with http.get(f"{prometheus}/api/v1/query", params={"query": expr}) as r:
        body = await r.json()
    assert body["status"] == "success", (expr, body)
    return list(body["data"]["result"])


async def value_of(http: aiohttp.ClientSession, prometheus: str, expr: str) -> float:
    result = await query(http, prometheus, expr)
    return float(result[0]["value"][1]) if result else 0.0


async def wait_value(http: aiohttp.ClientSession, prometheus: str, expr: str,
                     minimum: float) -> float:
    """The value of ``expr`` once it reaches ``minimum`` (scrapes come every second)."""
    value = 0.0
    for _ in range(120):
        value = await value_of(http, prometheus, expr)
        if value >= minimum:
            return value
        await asyncio.sleep(0.5)
    return value


async def test_prometheus_sees_runs_events_and_latencies(
    dev_with_metrics: dict[str, Any], prometheus: str
) -> None:
    gateway = dev_with_metrics["gateway"]
    async with aiohttp.ClientSession() as http:
        for i in range(RUNS):
            event = {"specversion": "1.0", "id": f"prom-{i}", "source": "/prometheus-test",
                     "type": "com.example.hello", "data": {"name": f"p{i}"}}
            async with http.post(f"{gateway}/events", json=event,
                                 headers={"content-type": "application/cloudevents+json"}) as r:
                assert r.status == 202
        completed = 'sum(flowbus_runner_runs_total{state="Completed"})'
        assert await wait_value(http, prometheus, completed, RUNS) == RUNS
        assert await wait_value(
            http, prometheus, "sum(flowbus_gateway_events_accepted_total)", RUNS) == RUNS
        assert await wait_value(
            http, prometheus, "sum(flowbus_orchestrator_event_to_job_seconds_count)", RUNS) == RUNS
        async with http.get(f"{prometheus}/api/v1/targets") as r:
            targets = (await r.json())["data"]["activeTargets"]
        assert {t["labels"]["job"]: t["health"] for t in targets} == {
            "gateway": "up", "orchestrator": "up", "runner": "up"}
        buckets = await query(http, prometheus, "flowbus_runner_start_latency_seconds_bucket")
        assert buckets and max(float(b["value"][1]) for b in buckets) >= RUNS
        assert await value_of(http, prometheus, "max(flowbus_orchestrator_leader)") == 1
        for expr in dashboard_queries():
            await query(http, prometheus, expr.replace("$__rate_interval", "1m"))
