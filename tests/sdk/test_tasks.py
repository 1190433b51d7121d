from __future__ import annotations

import asyncio
import threading
import uuid

import pytest

from flowbus import Task, flow, task, unmapped
from flowbus.exceptions import UpstreamTaskError
from flowbus.futures import as_completed, wait
from flowbus.runtime import task_run
from flowbus.tasks import exponential_backoff


def test_bare_and_configured_task_decorators() -> None:
    @task
    def plain(x: int) -> int:
        """Adds one."""
        return x + 1

    @task(name="named", tags=["a"], version="2")
    def configured(x: int) -> int:
        return x

    assert isinstance(plain, Task)
    assert (plain.name, plain.description) == ("plain", "Adds one.")
    assert (configured.name, configured.tags, configured.version) == ("named", {"a"}, "2")
    assert plain(1) == 2 and configured(3) == 3


def test_task_runs_outside_a_flow() -> None:
    @task
    def t(x: int) -> int:
        return x * 3

    assert t(2) == 6
    assert t.submit(3).result() == 9


async def test_async_task_inline_and_submitted() -> None:
    @task
    async def t(x: int) -> int:
        await asyncio.sleep(0.001)
        return x + 10

    @flow
    async def f() -> tuple[int, int]:
        inline = await t(1)
        submitted = t.submit(2).result()
        return inline, submitted

    assert await f() == (11, 12)


def test_async_task_called_from_a_sync_flow_returns_a_coroutine_run_by_the_engine() -> None:
    @task
    async def t() -> str:
        return "async"

    @flow
    def f() -> str:
        return t.submit().result()

    assert f() == "async"


def test_submit_resolves_upstream_futures_in_arguments() -> None:
    @task
    def inc(x: int) -> int:
        return x + 1

    @task
    def total(xs: list[int]) -> int:
        return sum(xs)

    @flow
    def f() -> int:
        a = inc.submit(1)
        b = inc.submit(a)  # type: ignore[arg-type]
        return total.submit([a, b]).result()  # type: ignore[list-item]

    assert f() == 5


def test_map_with_unmapped_argument() -> None:
    @task
    def scale(x: int, factors: list[int]) -> int:
        return x * sum(factors)

    @flow
    def f() -> list[int]:
        return scale.map([1, 2, 3], unmapped([1, 1])).result()

    assert f() == [2, 4, 6]


def test_map_rejects_iterables_of_different_lengths() -> None:
    @task
    def add(x: int, y: int) -> int:
        return x + y

    with pytest.raises(ValueError, match="different lengths"):
        add.map([1, 2], [1])


def test_task_raising_inside_map_fails_only_its_own_run() -> None:
    @task
    def check(x: int) -> int:
        if x == 2:
            raise ValueError(f"bad {x}")
        return x

    @flow
    def f() -> list[str]:
        futures = check.map([1, 2, 3])
        wait(futures)
        return [fut.state.name for fut in futures]

    assert f() == ["Completed", "Failed", "Completed"]

    @flow
    def g() -> list[int]:
        return check.map([1, 2, 3]).result()

    with pytest.raises(ValueError, match="bad 2"):
        g()


def test_downstream_of_a_failed_task_does_not_run() -> None:
    ran = []

    @task
    def bad() -> int:
        raise RuntimeError("upstream")

    @task
    def after(x: int) -> None:
        ran.append(x)

    @flow
    def f() -> str:
        state = after.submit(bad.submit(), return_state=True).final_state()
        return f"{state.type.value}:{state.name}"

    assert f() == "FAILED:NotReady"
    assert ran == []


def test_wait_for_orders_runs_without_passing_data() -> None:
    order: list[str] = []

    @task
    def first() -> None:
        threading.Event().wait(0.05)
        order.append("first")

    @task
    def second() -> None:
        order.append("second")

    @flow
    def f() -> None:
        a = first.submit()
        second.submit(wait_for=[a]).wait()

    f()
    assert order == ["first", "second"]


def test_wait_for_a_failed_upstream_fails_with_upstream_error() -> None:
    @task
    def bad() -> None:
        raise RuntimeError("x")

    @task
    def after() -> None:
        pass

    @flow
    def f() -> None:
        after(wait_for=[bad.submit()])

    with pytest.raises(UpstreamTaskError):
        f()


def test_return_state_on_a_task_call() -> None:
    @task
    def bad() -> None:
        raise ValueError("v")

    @flow
    def f() -> str:
        return bad(return_state=True).name  # type: ignore[attr-defined,no-any-return]

    assert f() == "Failed"


def test_concurrent_submits_really_run_in_parallel() -> None:
    barrier = threading.Barrier(2, timeout=5)

    @task
    def meet(i: int) -> int:
        barrier.wait()  # would time out if the two runs were sequential
        return i

    @flow
    def f() -> list[int]:
        return [fut.result() for fut in [meet.submit(1), meet.submit(2)]]

    assert f() == [1, 2]


def test_future_exposes_task_run_id_state_and_result_timeout() -> None:
    release = threading.Event()

    @task
    def slow() -> str:
        release.wait(5)
        return "done"

    @flow
    def f() -> None:
        fut = slow.submit()
        assert isinstance(fut.task_run_id, uuid.UUID)  # a UUID, as Prefect's
        with pytest.raises(TimeoutError):
            fut.result(timeout=0.01)
        assert fut.state.is_running() or fut.state.is_pending()
        release.set()
        assert fut.result(timeout=5) == "done"
        assert fut.state.is_completed()

    f()


def test_as_completed_yields_futures_as_they_finish() -> None:
    @task
    def sleepy(seconds: float) -> float:
        threading.Event().wait(seconds)
        return seconds

    @flow
    def f() -> list[float]:
        futures = [sleepy.submit(0.2), sleepy.submit(0.01)]
        return [fut.result() for fut in as_completed(futures)]

    assert f() == [0.01, 0.2]


def test_task_run_name_template_and_tags(sink) -> None:  # type: ignore[no-untyped-def]
    from flowbus import tags

    @task(task_run_name="load-{table}", tags=["db"])
    def load(table: str) -> tuple[str | None, list[str]]:
        return task_run.name, sorted(task_run.tags)

    @flow
    def f() -> tuple[str | None, list[str]]:
        with tags("nightly"):
            return load("users")

    assert f() == ("load-users", ["db", "nightly"])


def test_retries_until_success_with_observable_states(sink) -> None:  # type: ignore[no-untyped-def]
    calls = []

    @task(retries=3, retry_delay_seconds=[0, 0.01, 0.01])
    def flaky() -> int:
        calls.append(task_run.run_count)
        if len(calls) < 3:
            raise ConnectionError("try again")
        return len(calls)

    assert flaky() == 3
    assert calls == [1, 2, 3]
    (names,) = sink.runs("task-run").values()
    assert names == [
        "Pending", "Running", "AwaitingRetry", "Retrying", "AwaitingRetry", "Retrying", "Completed",
    ]  # fmt: skip


def test_retries_exhausted_fail_the_task() -> None:
    @task(retries=1)
    def always() -> None:
        raise ValueError("no")

    state = always(return_state=True)
    assert state.is_failed()


def test_retry_condition_fn_can_stop_retries() -> None:
    calls = []

    def only_connection_errors(task, run, state) -> bool:  # type: ignore[no-untyped-def]
        try:
            state.result()
        except ConnectionError:
            return True
        except Exception:
            return False
        return False

    @task(retries=5, retry_condition_fn=only_connection_errors)
    def broken() -> None:
        calls.append(1)
        raise KeyError("not retryable")

    assert broken(return_state=True).is_failed()
    assert len(calls) == 1


def test_exponential_backoff_gives_doubling_delays() -> None:
    from flowbus._engine import retry_delay

    assert exponential_backoff(10)(3) == [10, 20, 40]
    assert [retry_delay(exponential_backoff(2), n, 3, None) for n in (1, 2, 3)] == [2, 4, 8]
    assert retry_delay([1, 5], 3, 3, None) == 5  # the last delay repeats
    for _ in range(50):
        assert 10 <= retry_delay(10, 1, 1, 0.5) <= 15


async def test_async_task_retries() -> None:
    calls = []

    @task(retries=2)
    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 2:
            raise RuntimeError("once")
        return "ok"

    assert await flaky() == "ok"
    assert len(calls) == 2


def test_task_with_options_and_hooks() -> None:
    seen: list[str] = []

    def on_ok(tsk, run, state) -> None:  # type: ignore[no-untyped-def]
        seen.append(f"ok:{tsk.name}:{state.name}")

    def on_bad(tsk, run, state) -> None:  # type: ignore[no-untyped-def]
        seen.append(f"bad:{run.name}")

    @task(on_completion=[on_ok], on_failure=[on_bad])
    def t(fail: bool) -> None:
        if fail:
            raise ValueError

    t(False)
    t.with_options(name="renamed", task_run_name="x")(True, return_state=True)
    assert seen == ["ok:t:Completed", "bad:x"]


def test_a_hook_that_raises_is_logged_and_does_not_change_the_state(sink) -> None:  # type: ignore[no-untyped-def]
    def broken_hook(tsk, run, state) -> None:  # type: ignore[no-untyped-def]
        raise RuntimeError("hook broke")

    @task(on_completion=[broken_hook])
    def t() -> int:
        return 1

    assert t(return_state=True).is_completed()
    assert any("broken_hook" in r["message"] for r in sink.logs)


def test_body_returning_a_failed_state_fails_the_task() -> None:
    from flowbus.states import Failed

    @task
    def t():  # type: ignore[no-untyped-def]
        return Failed(message="custom")

    state = t(return_state=True)
    assert state.is_failed() and state.message == "custom"


def test_a_task_run_name_that_cannot_be_rendered_fails_the_run(sink) -> None:  # type: ignore[no-untyped-def]
    @task(task_run_name="run-{missing}")
    def t(x: int) -> int:
        return x

    state = t(1, return_state=True)
    assert state.is_failed() and "missing" in (state.message or "")
    (names,) = sink.runs("task-run").values()
    assert names == ["Pending", "Failed"]


def test_downstream_of_a_failed_task_emits_pending_then_failed_once(sink) -> None:  # type: ignore[no-untyped-def]
    @task
    def bad() -> int:
        raise RuntimeError

    @task
    def after(x: int) -> int:
        return x

    @flow
    def f() -> None:
        after(bad(return_state=True), return_state=True)

    f()
    assert sorted(map(tuple, sink.runs("task-run").values())) == [
        ("Pending", "NotReady"),
        ("Pending", "Running", "Failed"),
    ]
