"""State hooks added with the decorator forms (``@my_task.on_completion``), as Prefect 3.8.8.

Each expectation was run on Prefect 3.8.8 first: the decorator returns the function,
the hook lists (``on_completion_hooks`` ...) hold it, ``with_options`` copies keep
it, and the engine calls it like a hook given to ``@task(on_completion=[...])``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from flowbus import flow, task
from flowbus.transactions import transaction


def test_task_hook_decorators_run_like_hook_options() -> None:
    calls: list[tuple[Any, ...]] = []

    @task
    def ok(x: int) -> int:
        return x

    @ok.on_completion
    def done(tsk: Any, run: Any, state: Any) -> None:
        calls.append(("completion", tsk.name, state.name))

    @ok.on_running
    def running(tsk: Any, run: Any, state: Any) -> None:
        calls.append(("running", state.name))

    @task
    def bad() -> None:
        raise ValueError("no")

    @bad.on_failure
    def failed(tsk: Any, run: Any, state: Any) -> None:
        calls.append(("failure", state.name))

    @task
    def staged() -> int:
        return 1

    @staged.on_commit
    def committed(txn: Any) -> None:
        calls.append(("commit",))

    @flow
    def main() -> None:
        ok(1)
        bad(return_state=True)
        with transaction():
            staged()
        ok.with_options(name="ok2")(2)

    main()
    assert done.__name__ == "done" and callable(done)
    assert ok.on_completion_hooks == [done] and ok.on_running_hooks == [running]
    assert bad.on_failure_hooks == [failed] and staged.on_commit_hooks == [committed]
    assert calls == [("running", "Running"), ("completion", "ok", "Completed"), ("failure", "Failed"),
                     ("commit",), ("running", "Running"), ("completion", "ok2", "Completed")]


def test_flow_hook_decorators() -> None:
    calls: list[tuple[str, str]] = []

    @flow
    def fine() -> int:
        return 1

    @fine.on_running
    def started(fl: Any, run: Any, state: Any) -> None:
        calls.append(("running", state.name))

    @fine.on_completion
    def finished(fl: Any, run: Any, state: Any) -> None:
        calls.append(("completion", state.name))

    @flow
    def fails() -> None:
        raise RuntimeError("x")

    @fails.on_failure
    def failed(fl: Any, run: Any, state: Any) -> None:
        calls.append(("failure", state.name))

    assert fine() == 1
    assert fails(return_state=True).is_failed()
    copy = fine.with_options(name="fine-2")
    assert copy.on_completion_hooks == [finished] and copy.on_completion is not fine.on_completion
    assert calls == [("running", "Running"), ("completion", "Completed"), ("failure", "Failed")]
    assert fine.on_cancellation_hooks == [] and fine.on_crashed_hooks == []


def test_async_flow_and_task_hook_decorators() -> None:
    calls: list[str] = []

    @task
    async def double(x: int) -> int:
        return 2 * x

    @double.on_completion
    def task_done(tsk: Any, run: Any, state: Any) -> None:
        calls.append("task")

    @flow
    async def main() -> int:
        return await double(2)

    @main.on_completion
    async def flow_done(fl: Any, run: Any, state: Any) -> None:
        calls.append("flow")

    assert asyncio.run(main()) == 4
    assert calls == ["task", "flow"]


def test_a_non_callable_hook_is_refused_naming_the_hook() -> None:
    # Prefect 3.8.8 appends anything and fails later, when the hook is called.
    @task
    def t() -> None: ...

    with pytest.raises(TypeError, match="on_completion hooks must be callables, got int 5"):
        t.on_completion(5)  # type: ignore[arg-type]
    assert t.on_completion_hooks == []
