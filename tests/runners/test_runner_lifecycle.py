"""Cancellation, drain on SIGTERM, crashed runners, and runners sharing a pool."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from runner_helpers import (
    RunnerProcess,
    deploy,
    deploy_checked,
    logs_of,
    runner_settings,
    running,
    schedule,
    wait_final,
    wait_state,
    wait_until,
)

from events.bus import Bus
from events.deployments import read_result, request_cancel
from events.records import FlowRun, utcnow
from events.settings import NatsSettings
from runners import claims

ROOT = Path(__file__).resolve().parents[2]

CANCELLABLE = """
import time
from pathlib import Path
from flowbus import flow

def note_cancel(flow, flow_run, state):
    Path(MARKER).write_text(f"{flow_run.id} {state.name}")

@flow(on_cancellation=[note_cancel])
def long(seconds: float = 30) -> None:
    time.sleep(seconds)
"""


async def test_cancel_stops_the_worker_and_runs_on_cancellation_hooks(
    bus: Bus, nats_settings: NatsSettings, flow_file: Callable[[str], str], tmp_path: Path
) -> None:
    marker = tmp_path / "cancelled.txt"
    source = f"MARKER = {str(marker)!r}\n" + CANCELLABLE
    deployment = await deploy(bus, "long", f"{flow_file(source)}:long")
    async with running(bus, nats_settings, runner_settings(limit=1)) as runner:
        run_id = await schedule(bus, deployment)
        await wait_state(bus, run_id, "Running")
        await request_cancel(bus, run_id, source="tests")
        run = await wait_final(bus, run_id, max_wait=5)
        assert runner.executor.restarts() == 1  # the worker running it was killed
    assert run.state.name == "Cancelled"
    assert marker.read_text() == f"{run_id} Cancelled"
    assert any("note_cancel" in r["message"] for r in await logs_of(bus, run_id))


SLOW_ONCE = """
import time
from pathlib import Path
from flowbus import flow

@flow
def slow(marker: str, seconds: float) -> str:
    path = Path(marker)
    if path.exists():
        return "second attempt"
    path.write_text("started")
    time.sleep(seconds)
    path.write_text("finished")
    return "first attempt"
"""


FAST_ENV = {"heartbeat_interval": "0.25", "ack_wait": "2.0", "fetch_wait": "0.2",
            "limit": "2"}


async def test_sigterm_drains_finishing_runs_and_hands_back_the_rest(
    bus: Bus, nats_settings: NatsSettings, flowbus_env: dict[str, str],
    flow_file: Callable[[str], str], tmp_path: Path
) -> None:
    deployment = await deploy(bus, "slow", f"{flow_file(SLOW_ONCE)}:slow")
    runner = RunnerProcess(flowbus_env, tmp_path / "runner.log", **FAST_ENV, drain_timeout="4",
                           code_root=str(tmp_path))
    try:
        await runner.wait_ready()
        quick = await schedule(bus, deployment, {"marker": str(tmp_path / "q"), "seconds": 0.2})
        stuck = await schedule(bus, deployment, {"marker": str(tmp_path / "s"), "seconds": 60})
        await wait_state(bus, quick, "Running")
        await wait_state(bus, stuck, "Running")
        runner.process.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(runner.process.wait, 15)
    finally:
        runner.stop()
    assert code == 0
    done = await wait_final(bus, quick)
    assert done.state.name == "Completed"
    assert await read_result(bus, done) == "first attempt"
    kv = await bus.kv(bus.layout.flow_runs)
    entry = await kv.get(stuck)
    assert entry is not None
    handed = FlowRun.model_validate_json(entry.value)
    assert handed.state.name == "AwaitingRetry" and handed.runner_id is None
    # The job went back to the pool: another runner finishes the run.
    async with running(bus, nats_settings, runner_settings(limit=1)):
        again = await wait_final(bus, stuck)
    assert again.state.name == "Completed" and again.run_count == 2
    assert await read_result(bus, again) == "second attempt"


RETRIED = """
import os, time
from pathlib import Path
from flowbus import flow

@flow(retries=1)
def fragile(journal: str) -> str:
    with open(journal, "a") as f:
        f.write(f"start {os.getpid()} {time.time()}\\n")
    time.sleep(1.5)
    with open(journal, "a") as f:
        f.write(f"end {os.getpid()} {time.time()}\\n")
    return "done"
"""


async def test_killed_runner_run_is_crashed_then_retried_once_elsewhere(
    bus: Bus, nats_settings: NatsSettings, flowbus_env: dict[str, str],
    flow_file: Callable[[str], str], tmp_path: Path
) -> None:
    journal = tmp_path / "journal.txt"
    deployment = await deploy_checked(bus, "fragile", RETRIED, "fragile", root=tmp_path / "code")
    assert deployment.retries == 1  # read from the flow when it was deployed
    victim = RunnerProcess(flowbus_env, tmp_path / "victim.log", **FAST_ENV, runner_id="victim")
    try:
        await victim.wait_ready()
        run_id = await schedule(bus, deployment, {"journal": str(journal)})
        running_run = await wait_state(bus, run_id, "Running")
        assert running_run.runner_id == "victim"
        await wait_until(lambda: journal.exists() and "start" in journal.read_text())
        os.kill(victim.process.pid, signal.SIGKILL)
        victim.process.wait(5)
    finally:
        victim.stop()
    async with running(bus, nats_settings, runner_settings(limit=1, runner_id="rescuer")):
        crashed = await wait_state(bus, run_id, "Crashed")
        run = await wait_state(bus, run_id, "Completed")
    assert "victim stopped heartbeating" in (crashed.state.message or "")
    assert run.state.name == "Completed" and run.run_count == 2 and run.runner_id == "rescuer"
    await asyncio.sleep(1.6)  # long enough for an orphaned first attempt to have ended
    lines = [line.split() for line in journal.read_text().splitlines()]
    assert [kind for kind, *_ in lines] == ["start", "start", "end"]
    assert lines[1][1] == lines[2][1]  # only the second attempt ever finished
    assert any("Attempt 1 crashed" in r["message"] for r in await logs_of(bus, run_id))


async def test_a_run_left_pending_by_a_runner_stopped_mid_claim_is_claimed_again(
    bus: Bus, nats_settings: NatsSettings, tmp_path: Path
) -> None:
    """A runner stopped between the claim's Pending and Running writes left the run
    Pending (run_count 0). The next runner given its job hands the claim back and runs
    it as attempt 1, once."""
    journal = tmp_path / "journal.txt"
    deployment = await deploy_checked(bus, "fragile", RETRIED, "fragile", root=tmp_path / "code")
    run_id = await schedule(bus, deployment, {"journal": str(journal)})
    kv = await bus.kv(bus.layout.flow_runs)
    entry = await kv.get(run_id, latest=True)
    assert entry is not None
    settings = runner_settings(limit=1, runner_id="rescuer")
    pending, _ = claims.claimed(FlowRun.model_validate_json(entry.value), "victim",
                                utcnow(), settings.stale_after)
    silent = pending.model_copy(update={"updated": utcnow() - timedelta(seconds=60)})
    await kv.cas(run_id, silent.model_dump_json().encode(), entry.revision)
    async with running(bus, nats_settings, settings):
        run = await wait_state(bus, run_id, "Completed")
    assert (run.run_count, run.runner_id) == (1, "rescuer")
    assert [line.split()[0] for line in journal.read_text().splitlines()] == ["start", "end"]
    assert any("The claim by victim did not finish" in r["message"]
               for r in await logs_of(bus, run_id))


COUNTS = """
import os, threading
from flowbus import flow

@flow
def count(journal: str, n: int) -> int:
    fd = os.open(journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, f"{n}\\n".encode())
    os.close(fd)
    return n
"""


async def test_two_runners_share_a_pool_and_never_take_the_same_run(
    bus: Bus, nats_settings: NatsSettings, flow_file: Callable[[str], str], tmp_path: Path
) -> None:
    journal = tmp_path / "journal.txt"
    deployment = await deploy(bus, "count", f"{flow_file(COUNTS)}:count")
    first = runner_settings(limit=3, runner_id="first", isolation="inline")
    second = runner_settings(limit=3, runner_id="second", isolation="inline")
    async with running(bus, nats_settings, first), running(bus, nats_settings, second):
        ids = [await schedule(bus, deployment, {"journal": str(journal), "n": n})
               for n in range(40)]
        runs = [await wait_final(bus, run_id) for run_id in ids]
    assert all(r.state.name == "Completed" and r.run_count == 1 for r in runs)
    assert sorted(int(x) for x in journal.read_text().split()) == list(range(40))
    assert {r.runner_id for r in runs} == {"first", "second"}


async def test_dotted_entrypoints_import_from_the_runner_working_directory(
    bus: Bus, flowbus_env: dict[str, str], tmp_path: Path
) -> None:
    package = tmp_path / "work" / "shop_flows"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "orders.py").write_text(
        "from flowbus import flow\n\n@flow\ndef total(n: int) -> int:\n    return n * 3\n")
    deployment = await deploy(bus, "total", "shop_flows.orders:total")
    runner = RunnerProcess(flowbus_env, tmp_path / "runner.log", cwd=tmp_path / "work", **FAST_ENV)
    try:
        await runner.wait_ready()
        run = await wait_final(bus, await schedule(bus, deployment, {"n": 14}))
    finally:
        runner.stop()
    assert run.state.name == "Completed", run.state.message
    assert await read_result(bus, run) == 42


LONGER_THAN_ACK_WAIT = """
import time
from flowbus import flow

@flow
def lasting() -> str:
    time.sleep(2.5)
    return "done"
"""


async def test_heartbeats_keep_a_run_longer_than_ack_wait_from_being_redelivered(
    bus: Bus, nats_settings: NatsSettings, flow_file: Callable[[str], str]
) -> None:
    deployment = await deploy(bus, "lasting", f"{flow_file(LONGER_THAN_ACK_WAIT)}:lasting")
    # An idle second runner would get the job if it were redelivered.
    async with running(bus, nats_settings, runner_settings(limit=1)), \
            running(bus, nats_settings, runner_settings(limit=1, isolation="inline")):
        run_id = await schedule(bus, deployment)
        started = await wait_state(bus, run_id, "Running")
        await asyncio.sleep(1.2)  # past the ack wait
        kv = await bus.kv(bus.layout.flow_runs)
        entry = await kv.get(run_id)
        assert entry is not None
        during = FlowRun.model_validate_json(entry.value)
        run = await wait_final(bus, run_id)
    assert during.state.name == "Running" and during.updated > started.updated
    assert run.state.name == "Completed" and run.run_count == 1
    [info] = [c for c in await bus.consumers(bus.layout.runs_stream) if c.name == "pool-default"]
    assert info.num_redelivered == 0
