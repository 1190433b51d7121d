"""Async flows and tasks go through the same engine as sync ones."""

from __future__ import annotations

import asyncio

import pytest

from flowbus import flow, task
from flowbus.runtime import flow_run
from flowbus.states import State
from flowbus.task_runners import SequentialTaskRunner


async def test_async_subflow_has_its_own_run(sink) -> None:  # type: ignore[no-untyped-def]
    @flow
    async def child() -> str | None:
        return flow_run.id

    @flow
    async def parent() -> tuple[str | None, str | None]:
        return flow_run.id, await child()

    parent_id, child_id = await parent()
    assert parent_id != child_id
    runs = sink.runs("flow-run")
    assert runs[child_id] == runs[parent_id] == ["Pending", "Running", "Completed"]


async def test_async_tasks_gathered_run_concurrently() -> None:
    both_started = asyncio.Event()
    started = 0

    @task
    async def meet() -> int:
        nonlocal started
        started += 1
        if started == 2:
            both_started.set()
        await asyncio.wait_for(both_started.wait(), 5)
        return started

    @flow
    async def f() -> list[int]:
        return list(await asyncio.gather(meet(), meet()))

    assert await f() == [2, 2]


async def test_async_map_and_sequential_runner() -> None:
    @task
    async def sq(x: int) -> int:
        await asyncio.sleep(0)
        return x * x

    @flow(task_runner=SequentialTaskRunner())
    async def f() -> list[int]:
        return sq.map([1, 2, 3]).result()

    assert await f() == [1, 4, 9]


async def test_async_task_failure_fails_the_async_flow_and_return_state_keeps_it() -> None:
    @task
    async def bad() -> None:
        raise LookupError("async failure")

    @flow
    async def unhandled() -> None:
        await bad()

    @flow
    async def handled() -> str:
        state: State[None] = await bad(return_state=True)  # type: ignore[call-arg]
        return state.name

    with pytest.raises(LookupError):
        await unhandled()
    assert await handled() == "Failed"


async def test_async_flow_retries_and_log_prints(sink) -> None:  # type: ignore[no-untyped-def]
    attempts = []

    @flow(retries=1, log_prints=True)
    async def f() -> int:
        attempts.append(1)
        print(f"attempt {len(attempts)}")
        if len(attempts) == 1:
            raise RuntimeError("first")
        return len(attempts)

    assert await f() == 2
    assert {"attempt 1", "attempt 2"} <= {r["message"] for r in sink.logs}


async def test_sync_task_inside_async_flow_runs_inline() -> None:
    @task
    def plain(x: int) -> int:
        return x + 1

    @flow
    async def f() -> int:
        return plain(1) + plain.submit(2).result()

    assert await f() == 5
