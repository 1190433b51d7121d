"""Task tag concurrency limits (Prefect's ``prefect concurrency-limit`` on tags): task runs
carrying a limited tag run one at a time per slot, across processes, and a run waiting
for its slot is ``AwaitingConcurrencySlot``."""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from events import concurrency
from events.bus import Bus
from events.cloudevent import CloudEvent
from tests.state.state_helpers import ROOT, run_script

SCRIPT = """
import json, sys, time
from flowbus import flow, task

LOG = sys.argv[1]


@task(tags=["gpu"])
def train(i: int) -> int:
    start = time.time()
    time.sleep(0.6)
    with open(LOG, "a") as f:
        f.write(json.dumps([start, time.time()]) + "\\n")
    return i


@flow
def many() -> list:
    return [f.result() for f in [train.submit(i) for i in range(3)]]


print(many())
"""


async def test_tagged_task_runs_wait_for_the_tag_limit_across_processes(
    bus: Bus, state_env: dict[str, str], tmp_path: Path,
) -> None:
    await concurrency.set_limit(await bus.kv(bus.layout.concurrency),
                                concurrency.task_tag_limit("gpu"), 1)
    script = tmp_path / "tagged.py"
    script.write_text(SCRIPT)
    log = tmp_path / "intervals.jsonl"
    env = dict(state_env, FLOWBUS_HOME=str(tmp_path / "home"))
    procs = [await asyncio.create_subprocess_exec(
        sys.executable, str(script), str(log), env=env, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE) for _ in range(2)]
    try:
        outs = [await asyncio.wait_for(p.communicate(), 90) for p in procs]
    finally:
        for p in procs:
            if p.returncode is None:
                p.kill()
                await p.wait()
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err.decode()[-3000:]
        assert out.decode().strip().splitlines()[-1] == "[0, 1, 2]"
    intervals = sorted(json.loads(line) for line in log.read_text().splitlines())
    assert len(intervals) == 6
    for (_, end), (start, _) in itertools.pairwise(intervals):
        assert start >= end, f"two tagged task runs at once: {intervals}"


CONTEND = """
import os, sys, time
from flowbus import flow, task

GO = sys.argv[2]


@task(tags=["gpu"])
def hold(mark: str) -> str:
    open(mark, "w").close()
    deadline = time.monotonic() + 60
    while not os.path.exists(GO) and time.monotonic() < deadline:
        time.sleep(0.05)
    return mark


@flow
def contend(mark: str) -> str:
    return hold(mark)


print(contend(sys.argv[1]))
"""


async def _task_run_events(consumer: Any, seen: list[CloudEvent]) -> list[CloudEvent]:
    """Every task-run state event so far (acknowledged and kept in ``seen``)."""
    for delivery in await consumer.fetch(100, max_wait=0.5):
        if delivery.event.type.startswith("flowbus.task-run."):
            seen.append(delivery.event)
        await delivery.ack()
    return seen


async def test_a_task_run_waiting_for_its_tag_slot_is_awaiting_concurrency_slot(
    bus: Bus, state_env: dict[str, str], tmp_path: Path,
) -> None:
    await concurrency.set_limit(await bus.kv(bus.layout.concurrency),
                                concurrency.task_tag_limit("gpu"), 1)
    consumer = await bus.consumer("tag-wait-check")
    script = tmp_path / "contend.py"
    script.write_text(CONTEND)
    go = tmp_path / "go"
    first, second = tmp_path / "first.started", tmp_path / "second.started"
    env = dict(state_env, FLOWBUS_HOME=str(tmp_path / "home"))
    procs: list[asyncio.subprocess.Process] = []

    async def start(mark: Path) -> None:
        procs.append(await asyncio.create_subprocess_exec(
            sys.executable, str(script), str(mark), str(go), env=env, cwd=ROOT,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE))

    seen: list[CloudEvent] = []
    try:
        await start(first)
        await _until(lambda: first.exists(), procs, "the first task run to hold the slot")
        await start(second)
        waiting: list[CloudEvent] = []
        for _ in range(240):  # the second run reports that it waits for the slot
            waiting = [e for e in await _task_run_events(consumer, seen)
                       if e.type == "flowbus.task-run.AwaitingConcurrencySlot"]
            if waiting or procs[1].returncode is not None:
                break
        assert waiting, f"no AwaitingConcurrencySlot event; saw {[e.type for e in seen]}"
        assert not second.exists(), "the second task run ran while the first held the slot"
        go.touch()
        outs = [await asyncio.wait_for(p.communicate(), 90) for p in procs]
    finally:
        go.touch()
        for p in procs:
            if p.returncode is None:
                p.kill()
                await p.wait()
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err.decode()[-3000:]
    for _ in range(40):  # until both runs' final events arrived
        done = [e for e in await _task_run_events(consumer, seen)
                if e.type == "flowbus.task-run.Completed"]
        if len(done) == 2:
            break
    histories: dict[str, list[str]] = {}
    for event in seen:
        data = event.data
        assert isinstance(data, dict)
        histories.setdefault(data["parameters"]["mark"], []).append(data["state"]["name"])
    assert histories[str(first)] == ["Pending", "Running", "Completed"]
    assert histories[str(second)] == ["Pending", "AwaitingConcurrencySlot", "Running", "Completed"]
    (awaiting,) = waiting
    assert isinstance(awaiting.data, dict)
    assert awaiting.data["state"]["type"] == "SCHEDULED"
    assert awaiting.data["state"]["message"] == "Concurrency limit reached for tags: gpu"


async def _until(check: Callable[[], bool], procs: list[asyncio.subprocess.Process], what: str) -> None:
    for _ in range(600):
        if check():
            return
        if any(p.returncode is not None for p in procs):
            break
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def test_async_task_runs_wait_for_their_slot_without_blocking_the_event_loop(
    bus: Bus, state_env: dict[str, str], tmp_path: Path,
) -> None:
    # Both task runs share one event loop: the one waiting for the slot must let the
    # one holding it finish.
    await concurrency.set_limit(await bus.kv(bus.layout.concurrency),
                                concurrency.task_tag_limit("gpu"), 1)
    out = await asyncio.to_thread(run_script, dict(state_env, FLOWBUS_HOME=str(tmp_path / "home")), """
        import asyncio, json, time
        from flowbus import flow, task

        @task(tags=["gpu"])
        async def train(i: int) -> list:
            start = time.time()
            await asyncio.sleep(0.5)
            return [start, time.time()]

        @flow
        async def both() -> list:
            runs = await asyncio.gather(train(1), train(2))
            return sorted(runs)

        print(json.dumps(asyncio.run(both())))
        """, 60)
    first, second = json.loads(out.strip().splitlines()[-1])
    assert second[0] >= first[1], f"the two tagged task runs overlapped: {first} {second}"
