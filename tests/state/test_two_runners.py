"""Run-time state lives in JetStream: two runner processes (each with a disk of its own)
and other processes see the same caches, variables, artifacts, blocks and slots."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from events.bus import Bus
from events.deployments import read_result
from gateway.service import running as running_gateway
from gateway.settings import GatewaySettings
from tests.runners.runner_helpers import deploy, schedule, wait_final
from tests.state.state_helpers import ROOT, run_script

FLOWS = """
import json, os, time
from flowbus import flow, task
from flowbus.artifacts import create_markdown_artifact
from flowbus.blocks.system import Secret
from flowbus.concurrency.sync import concurrency
from flowbus.variables import Variable


@task(cache_key_fn=lambda context, parameters: f"square-{parameters['x']}")
def square(x: int) -> int:
    return x * x


@flow
def cached(x: int) -> list:
    state = square(x, return_state=True)
    return [state.name, state.result()]


@flow
def reads_variable() -> object:
    return Variable.get("threshold", "unset")


@flow
def makes_artifact(key: str) -> str:
    create_markdown_artifact(f"made in {os.getpid()}", key=key)
    return str(os.getpid())


@flow
def reads_secret() -> str:
    return Secret.load("api-token").get()


@flow
def guarded(log: str, hold: float) -> None:
    with concurrency("db", occupy=1, strict=True):
        start = time.time()
        time.sleep(hold)
        with open(log, "a") as f:
            f.write(json.dumps([start, time.time()]) + "\\n")
"""


async def _wait_runner_ready(bus: Bus, pools: list[str]) -> None:
    # A runner is serving once its durable consumer on the pool exists.
    for _ in range(300):
        names = {c.config.durable_name for c in await bus.consumers(bus.layout.runs_stream)}
        if all(any(n and pool in n for n in names) for pool in pools):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"runners of {pools} did not start")


async def _run(bus: Bus, deployment: Any, parameters: dict[str, Any] | None = None) -> Any:
    run = await wait_final(bus, await schedule(bus, deployment, parameters), max_wait=60)
    assert run.state.name == "Completed", run.state
    return await read_result(bus, run)


async def test_a_task_cached_on_one_runner_is_cached_on_another(
    bus: Bus, flow_source: Callable[[str], str], start_runner: Callable[[str], Any], tmp_path: Path,
) -> None:
    path = flow_source(FLOWS)
    on_a = await deploy(bus, "cached-a", f"{path}:cached", pool="a")
    on_b = await deploy(bus, "cached-b", f"{path}:cached", pool="b")
    start_runner("a")
    start_runner("b")
    await _wait_runner_ready(bus, ["a", "b"])
    assert await _run(bus, on_a, {"x": 7}) == ["Completed", 49]
    assert await _run(bus, on_b, {"x": 7}) == ["Cached", 49]
    assert await _run(bus, on_b, {"x": 8}) == ["Completed", 64]
    # Nothing went to either runner's disk: the record is in the flowbus-cache bucket.
    for pool in ("a", "b"):
        assert not (tmp_path / f"home-{pool}" / "cache").exists()
    kv = await bus.kv(bus.layout.cache)
    # Two cache records, and the two results the Completed runs stored for durable task
    # reuse (docs/sdk.md, "Durable task reuse"; the Cached run stored none).
    assert len([k for k in await kv.keys() if k.startswith("c.")]) == 4


async def test_variable_set_through_the_api_is_read_by_a_flow_on_a_runner(
    bus: Bus, flow_source: Callable[[str], str], start_runner: Callable[[str], Any],
) -> None:
    deployment = await deploy(bus, "reads-variable", f"{flow_source(FLOWS)}:reads_variable", pool="v")
    start_runner("v")
    settings = GatewaySettings(port=0, admin_api_key="k" * 40)
    async with running_gateway(bus, settings) as gw, aiohttp.ClientSession(
        base_url=gw.url, headers={"Authorization": f"Bearer {'k' * 40}"}
    ) as http:
        await _wait_runner_ready(bus, ["v"])
        assert await _run(bus, deployment) == "unset"
        async with http.post("/api/v1/variables", json={"name": "threshold", "value": {"n": 10}}) as r:
            assert r.status == 201, await r.text()
        assert await _run(bus, deployment) == {"n": 10}
        async with http.patch("/api/v1/variables/threshold", json={"value": [1, 2]}) as r:
            assert r.status == 200
        assert await _run(bus, deployment) == [1, 2]


async def test_artifact_from_a_runner_is_read_through_the_api_and_in_another_process(
    bus: Bus, flow_source: Callable[[str], str], start_runner: Callable[[str], Any],
    state_env: dict[str, str],
) -> None:
    deployment = await deploy(bus, "makes-artifact", f"{flow_source(FLOWS)}:makes_artifact", pool="r")
    start_runner("r")
    await _wait_runner_ready(bus, ["r"])
    run = await wait_final(bus, await schedule(bus, deployment, {"key": "daily-report"}), max_wait=60)
    maker_pid = await read_result(bus, run)
    settings = GatewaySettings(port=0, admin_api_key="k" * 40)
    async with running_gateway(bus, settings) as gw, aiohttp.ClientSession(
        base_url=gw.url, headers={"Authorization": f"Bearer {'k' * 40}"}
    ) as http:
        async with http.get("/api/v1/artifacts/daily-report") as r:
            assert r.status == 200
            latest = await r.json()
        async with http.get("/api/v1/artifacts", params={"flow_run_id": run.id}) as r:
            listed = await r.json()
    assert latest["data"] == f"made in {maker_pid}" and latest["flow_run_id"] == run.id
    assert [a["id"] for a in listed["items"]] == [latest["id"]]
    out = await asyncio.to_thread(run_script, state_env, """
        from flowbus.artifacts import Artifact
        print(Artifact.get("daily-report").data)
    """)
    assert out.strip() == f"made in {maker_pid}"


async def test_secret_saved_in_one_process_is_loaded_in_a_flow_on_a_runner(
    bus: Bus, flow_source: Callable[[str], str], start_runner: Callable[[str], Any],
    state_env: dict[str, str],
) -> None:
    await asyncio.to_thread(run_script, state_env, """
        from flowbus.blocks.system import Secret
        Secret(value="tok-123").save("api-token")
    """)
    stored = await (await bus.kv(bus.layout.blocks)).get("secret.api-token")
    assert stored is not None and b"tok-123" not in stored.value  # encrypted at rest
    deployment = await deploy(bus, "reads-secret", f"{flow_source(FLOWS)}:reads_secret", pool="s")
    start_runner("s")
    await _wait_runner_ready(bus, ["s"])
    assert await _run(bus, deployment) == "tok-123"


async def test_concurrency_admits_one_run_at_a_time_across_two_runners(
    bus: Bus, flow_source: Callable[[str], str], start_runner: Callable[[str], Any],
    state_env: dict[str, str], tmp_path: Path,
) -> None:
    created = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "flowbus.cli", "concurrency-limit", "create", "db",
                         "--limit", "1"], env=state_env, cwd=ROOT, capture_output=True, text=True,
        timeout=60, check=False)
    assert created.returncode == 0, created.stderr
    path = flow_source(FLOWS)
    on_a = await deploy(bus, "guarded-a", f"{path}:guarded", pool="ga")
    on_b = await deploy(bus, "guarded-b", f"{path}:guarded", pool="gb")
    start_runner("ga")
    start_runner("gb")
    await _wait_runner_ready(bus, ["ga", "gb"])
    log = tmp_path / "intervals.jsonl"
    params = {"log": str(log), "hold": 1.0}
    run_ids = [await schedule(bus, d, params) for d in (on_a, on_b, on_a)]
    runs = await asyncio.gather(*(wait_final(bus, run_id, max_wait=60) for run_id in run_ids))
    assert [r.state.name for r in runs] == ["Completed"] * 3
    intervals = sorted(json.loads(line) for line in log.read_text().splitlines())
    assert len(intervals) == 3
    for (_, end), (start, _) in itertools.pairwise(intervals):
        assert start >= end, f"two holders at once: {intervals}"


def _spawn(env: dict[str, str], source: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", source], env=env, cwd=ROOT, start_new_session=True)


async def test_a_sigkilled_holder_frees_its_slot_when_its_lease_expires(
    bus: Bus, state_env: dict[str, str], tmp_path: Path,
) -> None:
    from events import concurrency

    await concurrency.set_limit(await bus.kv(bus.layout.concurrency), "db", 1)
    marker = tmp_path / "held"
    holder = _spawn(state_env, f"""
import pathlib, time
from flowbus.concurrency.sync import concurrency
with concurrency("db", occupy=1, lease_duration=3, strict=True):
    pathlib.Path({str(marker)!r}).write_text("held")
    time.sleep(600)
""")
    try:
        for _ in range(600):
            if marker.exists():
                break
            assert holder.poll() is None, "the holder exited"
            await asyncio.sleep(0.05)
        assert marker.exists()
        # Held: another taker times out.
        blocked = await asyncio.to_thread(run_script, state_env, """
            from flowbus.concurrency.sync import concurrency, AcquireConcurrencySlotTimeoutError
            try:
                with concurrency("db", timeout_seconds=0.5, strict=True):
                    print("entered")
            except AcquireConcurrencySlotTimeoutError:
                print("timed out")
        """)
        assert blocked.strip() == "timed out"
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait(timeout=10)
        killed_at = time.monotonic()
        out = await asyncio.to_thread(run_script, state_env, """
            import time
            from flowbus.concurrency.sync import concurrency
            with concurrency("db", timeout_seconds=30, strict=True):
                print("entered")
        """)
        assert out.strip() == "entered"
        # Freed by the lease (3 s), not by a timeout of the waiter; process start-up included.
        assert time.monotonic() - killed_at < 3 + 15
    finally:
        if holder.poll() is None:
            os.killpg(holder.pid, signal.SIGKILL)
            holder.wait(timeout=10)
