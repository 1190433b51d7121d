from __future__ import annotations

import os
import threading

import pytest

from flowbus import flow, task
from flowbus.task_runners import (
    ConcurrentTaskRunner,
    ProcessPoolTaskRunner,
    SequentialTaskRunner,
    ThreadPoolTaskRunner,
)


@task
def pid_of(x: int) -> tuple[int, int]:
    return x * x, os.getpid()


@task
def explode(x: int) -> int:
    raise ValueError(f"exploded {x}")


def test_thread_pool_is_the_default_and_concurrent_is_its_alias() -> None:
    @flow
    def f() -> None:
        pass

    assert isinstance(f.task_runner, ThreadPoolTaskRunner)
    assert ConcurrentTaskRunner is ThreadPoolTaskRunner
    with pytest.raises(ValueError):
        ThreadPoolTaskRunner(max_workers=0)


def test_thread_pool_max_workers_limits_parallelism() -> None:
    active = 0
    peak = 0
    lock = threading.Lock()

    @task
    def work() -> None:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        threading.Event().wait(0.05)
        with lock:
            active -= 1

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
    def f() -> None:
        for fut in [work.submit() for _ in range(6)]:
            fut.wait()

    f()
    assert peak == 2


def test_sequential_runner_runs_submissions_in_the_calling_thread() -> None:
    threads = []

    @task
    def where() -> None:
        threads.append(threading.get_ident())

    @flow(task_runner=SequentialTaskRunner())
    def f() -> None:
        where.submit()
        where.submit()
        threads.append(threading.get_ident())

    f()
    assert len(set(threads)) == 1


def test_process_pool_runs_tasks_in_other_processes_and_reports_failures() -> None:
    @flow(task_runner=ProcessPoolTaskRunner(max_workers=2))
    def f() -> tuple[list[int], set[int], str]:
        results = pid_of.map([1, 2, 3]).result()
        bad = explode.submit(4)
        bad.wait()
        return [r[0] for r in results], {r[1] for r in results}, bad.state.name

    squares, pids, bad_state = f()
    assert squares == [1, 4, 9]
    assert os.getpid() not in pids
    assert bad_state == "Failed"


@task
def total(first: int, rest: list[int]) -> int:
    return first + sum(rest)


def test_process_pool_takes_futures_as_arguments_even_nested() -> None:
    # Prefect 3.8.8 resolves futures before a task run travels to its process, too.
    @flow(task_runner=ProcessPoolTaskRunner(max_workers=2))
    def f() -> tuple[int, int]:
        a = pid_of.submit(1)
        b = pid_of.submit(2)
        squares = total.submit(a.result()[0], [b.result()[0]])
        nested = total.submit(squares, [squares, squares])
        return squares.result(), nested.result()

    assert f() == (5, 15)


def test_process_pool_error_is_raised_from_result() -> None:
    @flow(task_runner=ProcessPoolTaskRunner(max_workers=1))
    def f() -> int:
        return explode.submit(5).result()

    with pytest.raises(ValueError, match="exploded 5"):
        f()
