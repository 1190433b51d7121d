from __future__ import annotations

import asyncio
import threading
import time

import pytest

from flowbus import flow, task
from flowbus.exceptions import FlowRunTimeoutError, TaskRunTimeoutError


def test_sync_task_that_ignores_its_timeout_is_failed_and_never_completed(sink) -> None:  # type: ignore[no-untyped-def]
    finished = threading.Event()

    @task(timeout_seconds=0.2)
    def stubborn() -> str:
        # Busy Python code: the injected interrupt stops it at the next bytecode.
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            pass
        finished.set()
        return "too late"

    start = time.monotonic()
    state = stubborn(return_state=True)
    assert time.monotonic() - start < 1.5
    assert state.is_failed()
    with pytest.raises(TaskRunTimeoutError):
        state.result()
    time.sleep(0.3)
    assert not finished.is_set()  # the body was interrupted, not left running
    (names,) = sink.runs("task-run").values()
    assert "Completed" not in names and names[-1] == "Failed"


def test_sync_task_blocked_in_c_is_abandoned_and_never_reported_completed(sink) -> None:  # type: ignore[no-untyped-def]
    @task(timeout_seconds=0.1)
    def sleeper() -> str:
        time.sleep(0.5)  # blocks inside C: cannot be interrupted, only abandoned
        return "late"

    state = sleeper(return_state=True)
    assert state.is_failed()
    time.sleep(0.6)  # the abandoned body finishes meanwhile
    (names,) = sink.runs("task-run").values()
    assert names == ["Pending", "Running", "Failed"]


def test_task_timeout_is_retried_like_any_failure() -> None:
    calls = []

    @task(timeout_seconds=0.1, retries=1)
    def slow_once() -> str:
        calls.append(1)
        if len(calls) == 1:
            time.sleep(0.3)
        return "ok"

    assert slow_once() == "ok"


async def test_async_task_timeout() -> None:
    @task(timeout_seconds=0.05)
    async def slow() -> None:
        await asyncio.sleep(5)

    state = await slow(return_state=True)
    assert state.is_failed()
    with pytest.raises(TaskRunTimeoutError):
        await state.result()  # awaitable in async code, as in Prefect


async def test_async_task_that_blocks_the_loop_past_its_timeout_is_not_completed() -> None:
    @task(timeout_seconds=0.05)
    async def blocking() -> str:
        time.sleep(0.2)  # noqa: ASYNC251 - deliberately blocks the loop
        return "late"

    assert (await blocking(return_state=True)).is_failed()


def test_sync_flow_timeout_interrupts_the_body() -> None:
    reached_end = threading.Event()

    @flow(timeout_seconds=0.2)
    def long_flow() -> None:
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            pass
        reached_end.set()

    state = long_flow(return_state=True)
    assert state.is_failed()
    with pytest.raises(FlowRunTimeoutError):
        state.result()
    time.sleep(0.2)
    assert not reached_end.is_set()


async def test_async_flow_timeout() -> None:
    @flow(timeout_seconds=0.05)
    async def long_flow() -> None:
        await asyncio.sleep(5)

    state = await long_flow(return_state=True)
    assert state.is_failed()
    with pytest.raises(FlowRunTimeoutError):
        await state.result()  # awaitable in async code, as in Prefect


def test_flow_hooks_run_for_their_state_and_a_failing_hook_changes_nothing(sink) -> None:  # type: ignore[no-untyped-def]
    seen: list[str] = []

    def record(flw, run, state) -> None:  # type: ignore[no-untyped-def]
        seen.append(f"{flw.name}:{state.name}")

    def broken(flw, run, state) -> None:  # type: ignore[no-untyped-def]
        raise RuntimeError("hook failure")

    @flow(on_running=[record], on_completion=[broken, record], on_failure=[record])
    def ok() -> int:
        return 1

    @flow(on_failure=[broken, record])
    def bad() -> None:
        raise ValueError

    assert ok(return_state=True).is_completed()
    assert bad(return_state=True).is_failed()
    assert seen == ["ok:Running", "ok:Completed", "bad:Failed"]
    assert sum("error was encountered while running hook 'broken'" in r["message"] for r in sink.logs) == 2


async def test_async_hooks_are_awaited() -> None:
    seen = []

    async def hook(flw, run, state) -> None:  # type: ignore[no-untyped-def]
        await asyncio.sleep(0)
        seen.append(state.name)

    @flow(on_completion=[hook])
    async def f() -> None:
        pass

    await f()
    assert seen == ["Completed"]


class Interrupt(BaseException):
    pass


def test_base_exception_in_a_flow_crashes_it_runs_on_crashed_and_propagates(sink) -> None:  # type: ignore[no-untyped-def]
    seen = []

    @flow(on_crashed=[lambda f, r, s: seen.append(s.name)])
    def f() -> None:
        raise Interrupt

    with pytest.raises(Interrupt):
        f()
    assert seen == ["Crashed"]
    (names,) = sink.runs("flow-run").values()
    assert names[-1] == "Crashed"


async def test_cancelled_async_flow_is_cancelled_and_cancellation_propagates(sink) -> None:  # type: ignore[no-untyped-def]
    seen = []
    started = asyncio.Event()

    @flow(on_cancellation=[lambda f, r, s: seen.append(s.name)])
    async def f() -> None:
        started.set()
        await asyncio.sleep(10)

    run = asyncio.ensure_future(f())
    await started.wait()
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert seen == ["Cancelled"]


def test_flow_timeout_does_not_wait_for_its_still_running_submitted_tasks() -> None:
    release = threading.Event()

    @task
    def long_task() -> None:
        release.wait(3)

    @flow(timeout_seconds=0.2)
    def f() -> None:
        long_task.submit().wait()

    start = time.monotonic()
    state = f(return_state=True)
    elapsed = time.monotonic() - start
    release.set()
    time.sleep(0.1)  # let the abandoned task finish while this test still captures its log
    assert state.is_failed()
    assert elapsed < 2


def test_base_exception_in_a_task_crashes_the_task_and_its_flow(sink) -> None:  # type: ignore[no-untyped-def]
    @task
    def t() -> None:
        raise Interrupt

    @flow
    def f() -> None:
        t()

    with pytest.raises(Interrupt):
        f()
    ((task_states,), (flow_states,)) = sink.runs("task-run").values(), sink.runs("flow-run").values()
    assert task_states == ["Pending", "Running", "Crashed"]
    assert flow_states == ["Pending", "Running", "Crashed"]
