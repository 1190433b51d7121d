"""Background runs behave as any task run: retries, timeouts, failures, upstream runs;
their futures work from any process; bad input gets a clear error."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from events import background as contract
from events.bus import Bus
from flowbus import task
from flowbus.background import TaskRunFuture, read_record, rebuild_error
from flowbus.exceptions import (
    ConfigurationError,
    FailedRun,
    ParameterBindError,
    SerializationError,
)
from tests.background.helpers import task_worker

ALL = ("bg_tasks:add", "bg_tasks:flaky", "bg_tasks:fails", "bg_tasks:too_slow",
       "bg_tasks:refuses", "bg_tasks:opaque")


def test_retries_timeouts_and_failures_are_the_tasks_own(
        tasks_root: Path, caller: None, worker_env: dict[str, Any], tmp_path: Path) -> None:
    import bg_tasks

    with task_worker(tasks_root, worker_env, *ALL):
        flaky = bg_tasks.flaky.delay(str(tmp_path / "count"))
        fails = bg_tasks.fails.delay()
        slow = bg_tasks.too_slow.delay()
        assert flaky.result(timeout=60) == "ok after 3"
        refused = bg_tasks.refuses.delay("ada")
        opaque = bg_tasks.opaque.delay()
        # The body's own exception is raised again in the caller, as Prefect does.
        with pytest.raises(ValueError, match="the body said no"):
            fails.result(timeout=60)
        with pytest.raises(bg_tasks.Refused) as caught:
            refused.result(timeout=60)
        assert (caught.value.who, caught.value.code) == ("ada", 7)
        # Args that are not JSON cannot travel: a FailedRun with the message.
        with pytest.raises(FailedRun, match="an opaque failure"):
            opaque.result(timeout=60)
        slow.wait(timeout=60)
        assert slow.state.is_failed() and "exceeded timeout of" in (slow.state.message or "")
        with pytest.raises(TimeoutError):
            slow.result()
    record = read_record(flaky.task_run_id)
    assert record is not None and record.state.name == "Completed" and record.run_count == 1
    assert fails.state.name == "Failed"
    assert isinstance(fails.result(raise_on_failure=False), ValueError)
    # In a process that has not imported the class, nothing is imported for it.
    record = read_record(refused.task_run_id)
    assert record is not None and record.error is not None
    assert record.error.type == "bg_tasks:Refused" and record.error.args == ["ada", 7]
    assert rebuild_error(record.error.model_copy(update={"type": "not_imported_mod:Refused"})) is None


def test_attributes_set_outside_args_reach_the_caller(
        tasks_root: Path, caller: None, worker_env: dict[str, Any]) -> None:
    import bg_tasks

    with task_worker(tasks_root, worker_env, "bg_tasks:declines"):
        future = bg_tasks.declines.delay()
        with pytest.raises(bg_tasks.Declined, match="over quota") as caught:
            future.result(timeout=60)
    # As Prefect's pickled exception: the JSON attributes and notes come back.
    assert caught.value.retry_after == 30
    assert caught.value.details == {"limit": 100, "used": [60, 41]}
    assert caught.value.__notes__ == ["see the quota page"]
    assert not hasattr(caught.value, "handle")  # not JSON: left out
    record = read_record(future.task_run_id)
    assert record is not None and record.error is not None
    assert record.error.attributes == {"retry_after": 30, "details": {"limit": 100, "used": [60, 41]},
                                       "__notes__": ["see the quota page"]}
    # A record naming class machinery as an attribute is refused, not applied.
    hostile = record.error.model_dump() | {"attributes": {"__class__": "builtins:object"}}
    with pytest.raises(ValidationError, match="not an attribute an error may carry"):
        contract.TaskRunError.model_validate(hostile)


def test_upstream_futures_are_waited_for_and_passed_as_results(
        tasks_root: Path, caller: None, worker_env: dict[str, Any]) -> None:
    import bg_tasks

    with task_worker(tasks_root, worker_env, *ALL):
        first = bg_tasks.add.delay(1, 2)
        second = bg_tasks.add.apply_async((first, 10))  # a future as a parameter
        after_failure = bg_tasks.add.apply_async((1, 1), wait_for=[bg_tasks.fails.delay()])
        assert second.result(timeout=60) == 13
        after_failure.wait(timeout=60)
    assert after_failure.state.is_failed()
    assert "ended Failed" in (after_failure.state.message or "")


def test_a_future_rebuilt_from_its_id_in_another_process_reads_the_result(
        tasks_root: Path, caller: None, worker_env: dict[str, Any],
        flowbus_env: dict[str, str]) -> None:
    import bg_tasks

    with task_worker(tasks_root, worker_env, "bg_tasks:add"):
        future = bg_tasks.add.delay(20, 22)
        script = ("import sys; from flowbus.background import TaskRunFuture; "
                  "f = TaskRunFuture(sys.argv[1]); print(f.result(timeout=60), f.state.name)")
        out = subprocess.run([sys.executable, "-c", script, future.task_run_id], env=flowbus_env,
                             capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split() == ["42", "Completed"]


def test_calls_that_do_not_fit_fail_in_the_caller(tasks_root: Path, caller: None) -> None:
    import bg_tasks

    with pytest.raises(ParameterBindError):
        bg_tasks.add.delay(1, 2, 3)
    with pytest.raises(ParameterBindError):
        bg_tasks.add.delay(1, z=2)
    with pytest.raises(SerializationError):
        bg_tasks.add.delay(object(), 1)
    with pytest.raises(ParameterBindError, match="at most"):
        bg_tasks.add.delay("x" * (contract.MAX_PARAMETERS_BYTES + 1), 1)
    with pytest.raises(TypeError, match="wait_for"):
        bg_tasks.add.apply_async((1, 2), wait_for=["not a future"])
    with pytest.raises(TypeError, match="dependencies"):
        bg_tasks.add.apply_async((1, 2), dependencies=["x"])  # type: ignore[arg-type]


def test_delay_without_a_server_says_what_to_set(tasks_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import bg_tasks

    from flowbus import _remote

    monkeypatch.delenv("FLOWBUS_NATS_URL", raising=False)
    _remote.reset()
    with pytest.raises(ConfigurationError, match="FLOWBUS_NATS_URL"):
        bg_tasks.add.delay(1, 2)


def test_parameters_that_do_not_fit_the_workers_task_fail_the_run(
        tasks_root: Path, caller: None, worker_env: dict[str, Any]) -> None:
    # The caller's code is newer than the worker's: same task, other parameters.
    def add(a: int, b: int, c: int) -> int:
        return a + b + c

    add.__module__, add.__qualname__ = "bg_tasks", "add"
    newer = task(add)
    with task_worker(tasks_root, worker_env, "bg_tasks:add"):
        future = newer.delay(1, 2, 3)
        future.wait(timeout=60)
    assert future.state.is_failed()
    assert "do not fit" in (future.state.message or "")


async def test_malformed_jobs_are_dropped_and_the_worker_goes_on(
        tasks_root: Path, caller: None, worker_env: dict[str, Any], bus: Bus) -> None:
    import asyncio

    import bg_tasks

    subject = contract.task_subject(bus.layout.namespace, bg_tasks.add.task_key)
    with task_worker(tasks_root, worker_env, "bg_tasks:add"):
        for junk in (b"not json", b"{}", json.dumps({"task_run_id": "../x", "task_key": "k"}).encode(),
                     json.dumps({"task_run_id": "nope", "task_key": bg_tasks.add.task_key}).encode(),
                     json.dumps({"task_run_id": "a", "task_key": "other.task"}).encode()):
            await bus.publish_raw(subject, junk)
        future = await asyncio.to_thread(bg_tasks.add.delay, 2, 3)
        assert await asyncio.to_thread(future.result, 60) == 5


@pytest.mark.parametrize("entrypoint,message", [
    ("bg_tasks:not_a_task", "names a int, not a @task"),
    ("bg_tasks:missing", "has no attribute 'missing'"),
    ("no_such_module:add", "no_such_module"),
    ("../outside:add", "outside"),
    ("bg_tasks", "bg_tasks"),
])
def test_task_worker_refuses_what_is_not_a_task(
        tasks_root: Path, worker_env: dict[str, Any], entrypoint: str, message: str) -> None:
    out = subprocess.run([sys.executable, "-m", "flowbus.cli", "task-worker", entrypoint],
                         cwd=tasks_root, env=worker_env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    assert message in out.stderr and "Traceback" not in out.stderr


def test_task_worker_refuses_a_bad_limit(tasks_root: Path, worker_env: dict[str, Any]) -> None:
    out = subprocess.run([sys.executable, "-m", "flowbus.cli", "task-worker", "bg_tasks:add",
                          "--limit", "0"], cwd=tasks_root, env=worker_env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 2 and "FLOWBUS_TASK_WORKER_LIMIT (--limit)" in out.stderr


def test_unknown_future_id_is_a_lookup_error(caller: None) -> None:
    with pytest.raises(LookupError, match="No background task run"):
        _ = TaskRunFuture("does-not-exist").state


async def test_a_web_handler_awaits_the_future(
        tasks_root: Path, caller: None, worker_env: dict[str, Any]) -> None:
    import asyncio

    import bg_tasks

    with task_worker(tasks_root, worker_env, "bg_tasks:add"):
        future = await asyncio.to_thread(bg_tasks.add.delay, 4, 5)  # delay blocks briefly
        await future.wait_async(timeout=60)
        assert await future.result_async(timeout=1) == 9
