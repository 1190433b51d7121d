"""The three runner faults, reproduced with runner subprocesses, SIGKILL and SIGSTOP.

1. a runner killed after claiming a run but before its worker loaded the flow;
2. a runner frozen (SIGSTOP) while its worker is in the body;
3. a runner killed after the body finished but before the final state was recorded.

Each ends with the run Completed; the body ran exactly once (1, 3) or never twice at
the same time (2).
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest
from runner_helpers import (
    RunnerProcess,
    deploy_checked,
    schedule,
    wait_final,
    wait_state,
    wait_until,
)

from events.bus import Bus
from events.deployments import read_result
from events.records import FlowRun

pytestmark = pytest.mark.timeout(180)

# Heartbeat 0.5 s: worker lease 1.5 s, a run is taken over after 2 s of silence
# and its job redelivered after 3 s.
ENV = {"heartbeat_interval": "0.5", "ack_wait": "3", "fetch_wait": "0.2", "limit": "1"}

SLOW_IMPORT = """
import os, time
from pathlib import Path
from flowbus import flow

if not os.environ.get("_FLOWBUS_INSPECTING_ENTRYPOINTS"):
    with open(os.environ["FAULT_DIR"] + "/imports", "a") as f:
        f.write(f"{os.getpid()}\\n")
    time.sleep(3)

@flow(retries=0)
def slow_import(event_id: str) -> str:
    with open(os.environ["FAULT_DIR"] + "/journal", "a") as f:
        f.write(f"{event_id} {os.getpid()}\\n")
    return event_id
"""


async def _completed(bus: Bus, run_id: str) -> FlowRun:
    """The record once Completed (a Crashed on the way is final too, but not the end)."""
    try:
        return await wait_state(bus, run_id, "Completed", 60)
    except TimeoutError:
        return await wait_final(bus, run_id, 1)  # fails naming the state it is in


def _lines(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


async def _attempt_outcome(bus: Bus, run_id: str, attempt: int) -> bytes | None:
    kv = await bus.kv(bus.layout.attempts)
    entry = await kv.get(f"{run_id}.{attempt}")
    return None if entry is None else entry.value


async def test_runner_killed_before_the_flow_loaded_is_retried_though_retries_is_zero(
    bus: Bus, flowbus_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**flowbus_env, "FAULT_DIR": str(tmp_path)}
    deployment = await deploy_checked(bus, "slow-import", SLOW_IMPORT, "slow_import",
                                      root=tmp_path / "code")
    victim = RunnerProcess(env, tmp_path / "victim.log", **ENV, runner_id="victim")
    rescuer: RunnerProcess | None = None
    try:
        await victim.wait_ready()
        run_id = await schedule(bus, deployment, {"event_id": "e1"})
        await wait_until(lambda: (tmp_path / "imports").exists(), 30)
        os.kill(victim.process.pid, signal.SIGKILL)
        victim.process.wait(5)
        rescuer = RunnerProcess(env, tmp_path / "rescuer.log", **ENV, runner_id="rescuer")
        run = await _completed(bus, run_id)
    finally:
        victim.stop()
        if rescuer is not None:
            rescuer.stop()
    assert run.state.name == "Completed", run.state.message
    assert (run.run_count, run.body_runs, run.runner_id) == (2, 1, "rescuer")
    assert [line[0] for line in _lines(tmp_path / "journal")] == ["e1"]  # exactly once


OVERLAP = """
import os, time
from flowbus import flow

@flow(retries=1)
def ticking(journal: str, seconds: float) -> str:
    end = time.time() + seconds
    while time.time() < end:
        with open(journal, "a") as f:
            f.write(f"tick {os.getpid()} {time.time()}\\n")
        time.sleep(0.05)
    with open(journal, "a") as f:
        f.write(f"end {os.getpid()} {time.time()}\\n")
    return "done"
"""


async def test_frozen_runner_never_lets_the_body_run_twice_at_once(
    bus: Bus, flowbus_env: dict[str, str], tmp_path: Path
) -> None:
    journal = tmp_path / "journal"
    deployment = await deploy_checked(bus, "ticking", OVERLAP, "ticking", root=tmp_path / "code")
    frozen = RunnerProcess(flowbus_env, tmp_path / "frozen.log", **ENV, runner_id="frozen")
    other: RunnerProcess | None = None
    try:
        await frozen.wait_ready()
        run_id = await schedule(bus, deployment, {"journal": str(journal), "seconds": 4})
        await wait_until(lambda: len(_lines(journal)) > 5, 30)
        frozen.process.send_signal(signal.SIGSTOP)
        other = RunnerProcess(flowbus_env, tmp_path / "other.log", **ENV, runner_id="other")
        # Frozen far longer than the lease, the stale period and the ack wait.
        await wait_state(bus, run_id, "Crashed", 30)
        await asyncio.sleep(2)
        frozen.process.send_signal(signal.SIGCONT)
        run = await _completed(bus, run_id)
        await asyncio.sleep(1)  # the resumed runner must not touch the run any more
        after = await wait_final(bus, run_id, 5)
    finally:
        frozen.process.send_signal(signal.SIGCONT)
        frozen.stop()
        if other is not None:
            other.stop()
    assert run.state.name == "Completed", run.state.message
    assert (run.run_count, run.runner_id) == (2, "other")
    assert after.model_dump() == run.model_dump()
    lines = _lines(journal)
    pids = list(dict.fromkeys(pid for _, pid, _ in lines))
    assert len(pids) == 2, pids  # the body was cut off once and ran again: at-least-once
    first, second = ([float(t) for _, pid, t in lines if pid == p] for p in pids)
    assert max(first) < min(second), "the two attempts' bodies overlapped"
    assert [kind for kind, pid, _ in lines if pid == pids[0]].count("end") == 0
    assert [kind for kind, pid, _ in lines if pid == pids[1]][-1] == "end"


FINISHING = """
import os, time
from flowbus import flow

@flow
def finishing(journal: str) -> str:
    with open(journal, "a") as f:
        f.write(f"start {os.getpid()}\\n")
    time.sleep(1)
    with open(journal, "a") as f:
        f.write(f"end {os.getpid()}\\n")
    return "the only result"
"""


async def test_body_finished_before_its_runner_died_is_concluded_not_rerun(
    bus: Bus, flowbus_env: dict[str, str], tmp_path: Path
) -> None:
    journal = tmp_path / "journal"
    deployment = await deploy_checked(bus, "finishing", FINISHING, "finishing",
                                      root=tmp_path / "code")
    # A lease long enough for the body to end while its runner is frozen.
    slow = {**ENV, "worker_lease": "5", "ack_wait": "6"}
    victim = RunnerProcess(flowbus_env, tmp_path / "victim.log", **slow, runner_id="victim")
    rescuer: RunnerProcess | None = None
    try:
        await victim.wait_ready()
        run_id = await schedule(bus, deployment, {"journal": str(journal)})
        await wait_until(lambda: journal.exists(), 30)
        victim.process.send_signal(signal.SIGSTOP)  # it cannot record the final state
        for _ in range(200):
            if await _attempt_outcome(bus, run_id, 1) is not None:
                break
            await asyncio.sleep(0.05)
        held = await wait_state(bus, run_id, "Running", 5)
        os.kill(victim.process.pid, signal.SIGKILL)
        victim.process.wait(5)
        rescuer = RunnerProcess(flowbus_env, tmp_path / "rescuer.log", **slow,
                                runner_id="rescuer")
        run = await _completed(bus, run_id)
    finally:
        victim.stop()
        if rescuer is not None:
            rescuer.stop()
    assert held.runner_id == "victim"
    assert await _attempt_outcome(bus, run_id, 1) is not None
    assert run.state.name == "Completed", run.state.message
    assert run.run_count == 1  # no second attempt was started
    assert [kind for kind, _ in _lines(journal)] == ["start", "end"]
    assert await read_result(bus, run) == "the only result"
