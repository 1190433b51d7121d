"""Prefect's task-runner interface on flowbus's runners, as in Prefect 3.8.8 (each
expectation was run on Prefect first): a started runner's ``submit(task, parameters)``
and ``map(task, parameters)``, the pool-size settings, equality of duplicates,
``PrefectWrappedFuture``; sync and async tasks."""

from __future__ import annotations

import concurrent.futures as cf
import logging
import uuid
from typing import Any

import pytest

from flowbus import flow, task
from flowbus.context import TagsContext, tags
from flowbus.futures import PrefectFuture, PrefectWrappedFuture
from flowbus.settings import (
    PREFECT_TASK_RUNNER_THREAD_POOL_MAX_WORKERS,
    PREFECT_TASKS_RUNNER_PROCESS_POOL_MAX_WORKERS,
    temporary_settings,
)
from flowbus.states import Completed
from flowbus.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner
from flowbus.utilities.annotations import unmapped


@task
def pair(a: Any, b: Any = "b") -> tuple[Any, Any]:
    return a, b


@task
async def apair(a: Any, b: Any = "b") -> tuple[Any, Any]:
    return a, b


@task
def current_tags(a: Any = None) -> set[str]:
    return set(TagsContext.get().current_tags)


@task
async def acurrent_tags(a: Any = None) -> set[str]:
    return set(TagsContext.get().current_tags)


@task
def boom() -> None:
    raise ValueError("boom in the task")


class Ready(PrefectWrappedFuture[Any, "cf.Future[Any]"]):
    """A future whose run is already over, as users subclass Prefect's."""

    def __init__(self, data: Any) -> None:
        super().__init__(uuid.uuid4(), cf.Future())
        self._data = data

    def wait(self, timeout: float | None = None) -> None:
        return None

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> Any:
        return self._data

    @property
    def state(self) -> Any:
        return Completed(data=self._data)


@pytest.mark.parametrize("fn", [pair, apair])
def test_submit_runs_a_task_with_its_parameters(fn: Any) -> None:
    with ThreadPoolTaskRunner() as runner:
        future = runner.submit(fn, {"a": 1, "b": 2})
        assert isinstance(future, PrefectFuture)
        assert isinstance(future.task_run_id, uuid.UUID)
        assert isinstance(future.wrapped_future, cf.Future)
        assert future.result() == (1, 2)
        assert runner.submit(fn, {"a": 1}).result() == (1, "b")  # defaults filled in
        assert future.state.is_completed()


@pytest.mark.parametrize("fn", [current_tags, acurrent_tags])
def test_submitted_and_mapped_runs_see_the_submitters_tags(fn: Any) -> None:
    with tags("tag1", "tag2"), ThreadPoolTaskRunner() as runner:
        assert runner.submit(fn, {}).result() == {"tag1", "tag2"}
        assert [f.result() for f in runner.map(fn, {"a": [1, 2, 3]})] == [{"tag1", "tag2"}] * 3


@pytest.mark.parametrize("fn", [pair, apair])
def test_map_zips_iterables_keeps_unmapped_and_resolves_futures(fn: Any) -> None:
    with ThreadPoolTaskRunner() as runner:
        futures = runner.map(fn, {"a": [1, 2, 3], "b": [4, 5, 6]})
        assert [f.result() for f in futures] == [(1, 4), (2, 5), (3, 6)]
        assert runner.map(fn, {"a": [1, 2], "b": unmapped([0])}).result() == [(1, [0]), (2, [0])]
        ready = Ready([7, 8])
        assert [f.result() for f in runner.map(fn, {"a": ready, "b": ready})] == [(7, 7), (8, 8)]
        with pytest.raises(ValueError, match="different lengths"):
            runner.map(fn, {"a": [1, 2], "b": [1]})


def test_a_runner_must_be_started_and_refuses_what_is_not_a_task() -> None:
    runner = ThreadPoolTaskRunner()
    with pytest.raises(RuntimeError, match="Task runner is not started"):
        runner.submit(pair, {"a": 1})
    with pytest.raises(RuntimeError, match="Task runner is not started"):
        runner.map(pair, {"a": [1]})
    with runner:
        with pytest.raises(TypeError, match="runs tasks"):
            runner.submit(lambda: 1, {})
        with pytest.raises(TypeError, match="parameters must be a dict"):
            runner.submit(pair, [1, 2])  # type: ignore[arg-type]
        failed = runner.submit(boom, {})
        with pytest.raises(ValueError, match="boom in the task"):
            failed.result()
        assert failed.state.is_failed()
        assert isinstance(failed.result(raise_on_failure=False), ValueError)


def test_wait_for_orders_runs() -> None:
    seen: list[str] = []

    @task
    def note(label: str) -> str:
        seen.append(label)
        return label

    with ThreadPoolTaskRunner() as runner:
        first = runner.submit(note, {"label": "first"})
        second = runner.submit(note, {"label": "second"}, wait_for=[first])
        assert second.result() == "second"
    assert seen == ["first", "second"]


def test_pool_sizes_come_from_the_argument_or_the_settings() -> None:
    with ThreadPoolTaskRunner(max_workers=2) as runner:
        assert runner._executor is not None and runner._executor._max_workers == 2
    with temporary_settings({PREFECT_TASK_RUNNER_THREAD_POOL_MAX_WORKERS: 5}):
        with ThreadPoolTaskRunner() as runner:
            assert runner._executor is not None and runner._executor._max_workers == 5
    with temporary_settings({PREFECT_TASKS_RUNNER_PROCESS_POOL_MAX_WORKERS: 3}):
        assert ProcessPoolTaskRunner()._workers() == 3
    assert ProcessPoolTaskRunner(max_workers=1)._workers() == 1


def test_duplicates_are_equal_and_distinct() -> None:
    runner = ThreadPoolTaskRunner(max_workers=7)
    assert runner.duplicate() == runner and runner.duplicate() is not runner
    assert ThreadPoolTaskRunner(max_workers=8) != runner
    process = ProcessPoolTaskRunner(max_workers=2, initializer=print, initargs=("x",))
    assert process.duplicate() == process and ProcessPoolTaskRunner(max_workers=2) != process


def test_process_pool_runs_submitted_and_mapped_tasks_with_the_submitters_tags() -> None:
    runner = ProcessPoolTaskRunner(max_workers=1)
    with tags("tag1", "tag2"), runner:
        assert runner._executor is not None and runner._executor._max_workers == 1
        assert runner.submit(pair, {"a": 1, "b": 2}).result() == (1, 2)
        assert [f.result() for f in runner.map(apair, {"a": [1, 2]})] == [(1, "b"), (2, "b")]
        assert runner.submit(current_tags, {}).result() == {"tag1", "tag2"}
        assert runner.map(acurrent_tags, {"a": [1]}).result() == [{"tag1", "tag2"}]
    assert runner._executor is None  # shut down on exit


@task
def nap(seconds: float) -> str:
    import time

    time.sleep(seconds)
    return "slept"


def test_process_pool_cancel_all_shuts_the_pool_down_without_waiting() -> None:
    with ProcessPoolTaskRunner(max_workers=1) as runner:
        first = runner.submit(nap, {"seconds": 0.5})
        queued = [runner.submit(nap, {"seconds": 0.5}) for _ in range(3)]
        runner.cancel_all()
        assert runner._executor is None
        first.wait(120)
        for future in queued:
            future.wait(120)
        # Runs already dispatched finish; what never reached a worker is cancelled.
        assert any(f.wrapped_future.cancelled() or f.wrapped_future.exception() is not None for f in queued)


def test_runners_inside_flows_still_take_the_engines_jobs() -> None:
    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
    def pipeline() -> list[Any]:
        return [f.result() for f in pair.map([1, 2], unmapped("x"))]

    assert pipeline() == [(1, "x"), (2, "x")]


def test_a_wrapped_future_is_a_future_with_its_ids() -> None:
    ready = Ready(5)
    assert isinstance(ready, PrefectFuture)
    assert isinstance(ready.task_run_id, uuid.UUID) and isinstance(ready.wrapped_future, cf.Future)
    assert ready.result() == 5 and ready.state.is_completed()


@pytest.mark.parametrize("max_workers", [1, 2, None])
def test_nested_submits_on_a_full_pool_do_not_deadlock(max_workers: int | None) -> None:
    @task
    def countdown(n: int) -> int:
        if n == 0:
            return 0
        return countdown.submit(n - 1).result()

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=max_workers))
    def pipeline() -> int:
        return countdown.submit(12).result()

    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("flowbus.task_runner.threadpool")
    logger.addHandler(handler)
    try:
        assert pipeline() == 0
    finally:
        logger.removeHandler(handler)
    warnings = [r for r in records if "max_workers" in r.getMessage() and "deadlock" in r.getMessage()]
    # Once per runner when the pool was full (12 nested runs need more than 1 or 2
    # workers), none when it never was (the default pool has 32).
    assert len(warnings) == (1 if max_workers else 0)
