"""100 Task.delay calls over two task-worker processes, one SIGKILLed midway: every run
completes, each body runs once (or twice, for a run the kill cut off), and the caller
reads every result."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from flowbus.background import read_record
from tests.background.helpers import task_worker


def _lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def test_killed_worker_leaves_its_runs_to_the_other(
        tasks_root: Path, caller: None, worker_env: dict[str, Any]) -> None:
    import bg_tasks

    marks = Path(worker_env["MARKS_DIR"])
    limit = ("--limit", "4")
    with task_worker(tasks_root, worker_env, "bg_tasks:marked", extra=limit) as victim, \
            task_worker(tasks_root, worker_env, "bg_tasks:marked", extra=limit) as survivor:
        futures = [bg_tasks.marked.delay(i, seconds=0.05) for i in range(100)]
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # midway: some runs done, others waiting
            ended = [p for p in marks.glob("*.end")]
            if len(ended) >= 25 and any(str(victim.pid) in _lines(p) for p in ended):
                break
            time.sleep(0.01)
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait(timeout=30)
        results = [f.result(timeout=180) for f in futures]
        assert survivor.poll() is None

    assert results == [i * i for i in range(100)]
    victim_pid, survivor_pid = str(victim.pid), str(survivor.pid)
    doubled = []
    for i in range(100):
        starts = _lines(marks / f"{i}.start")
        assert len(starts) in (1, 2), (i, starts)
        if len(starts) == 2:  # cut off by the kill, then run again by the other worker
            assert starts == [victim_pid, survivor_pid], (i, starts)
            doubled.append(i)
            record = read_record(futures[i].task_run_id)
            assert record is not None
            assert (record.state.name, record.run_count, record.crashes) == ("Completed", 2, 1)
    crashed = [i for i in range(100) if (r := read_record(futures[i].task_run_id)) and r.crashes]
    print(f"runs cut off by the kill and run again: {doubled}; taken over: {crashed}; "
          f"victim starts: {sum(victim_pid in _lines(marks / f'{i}.start') for i in range(100))}")
    assert len(doubled) <= 4  # at most the victim's runs in flight (its --limit)
    by_pid = [s for i in range(100) for s in _lines(marks / f"{i}.start")]
    assert by_pid.count(victim_pid) >= 1 and by_pid.count(survivor_pid) >= 1
