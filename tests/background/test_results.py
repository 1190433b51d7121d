"""Where a background run's result is kept: in its record when small, else in a result store."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from events.background import INLINE_RESULT_BYTES
from flowbus.background import read_record
from tests.background.helpers import task_worker


def _result_in_another_process(task_run_id: str, env: dict[str, str]) -> str:
    script = ("import sys; from flowbus.background import TaskRunFuture; "
              "print(len(TaskRunFuture(sys.argv[1]).result(timeout=60)))")
    out = subprocess.run([sys.executable, "-c", script, task_run_id], env=env,
                         capture_output=True, text=True, timeout=120, check=True)
    return out.stdout.strip()


def test_small_results_travel_in_the_record_large_ones_in_the_result_store(
        tasks_root: Path, caller: None, worker_env: dict[str, Any],
        flowbus_env: dict[str, str]) -> None:
    import bg_tasks

    # JSON of a string of n "x" is n + 2 bytes: the largest result the record carries,
    # and one byte more.
    fits, over = INLINE_RESULT_BYTES - 2, INLINE_RESULT_BYTES - 1
    with task_worker(tasks_root, worker_env, "bg_tasks:big"):
        small, large = bg_tasks.big.delay(fits), bg_tasks.big.delay(over)
        assert small.result(timeout=60) == "x" * fits
        assert large.result(timeout=60) == "x" * over
    small_record, large_record = read_record(small.task_run_id), read_record(large.task_run_id)
    assert small_record is not None and large_record is not None
    assert small_record.result_key is None and small_record.result_value == b'"' + b"x" * fits + b'"'
    assert small_record.result_serializer == "json"
    assert large_record.result_value is None and large_record.result_key == large.task_run_id
    # Either way a process that only knows the id reads it.
    assert _result_in_another_process(small.task_run_id, flowbus_env) == str(fits)
    assert _result_in_another_process(large.task_run_id, flowbus_env) == str(over)


def test_a_task_with_its_own_result_storage_keeps_even_a_small_result_there(
        tasks_root: Path, caller: None, worker_env: dict[str, Any]) -> None:
    import bg_tasks

    with task_worker(tasks_root, worker_env, "bg_tasks:stored"):
        future = bg_tasks.stored.delay(7)
        assert future.result(timeout=60) == 7
    record = read_record(future.task_run_id)
    assert record is not None and record.result_value is None
    assert record.result_key == future.task_run_id
    assert (tasks_root / "results" / future.task_run_id).read_bytes() == b"7"
