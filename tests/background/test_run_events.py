"""Every state event and log line of a background run reaches the streams, in order per
run, when many runs end together (a task worker publishes them in shared windows)."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from events.bus import Bus
from events.consumer import Consumer
from tests.background.helpers import task_worker

RUNS = 40


async def _fetch_all(consumer: Consumer, want: int) -> list[Any]:
    seen: list[Any] = []
    for _ in range(120):  # the worker's sink sends them shortly after the runs end
        seen += await consumer.fetch(want - len(seen) + 10, max_wait=0.5)
        if len(seen) >= want:
            break
    return seen


async def test_each_runs_events_and_log_lines_are_stored_in_order(
        tasks_root: Path, caller: None, worker_env: dict[str, Any], bus: Bus) -> None:
    import bg_tasks

    def delay_all() -> list[Any]:
        with ThreadPoolExecutor(8) as pool:  # calls at once: the runs end together
            return list(pool.map(bg_tasks.chatty.delay, range(RUNS)))

    with task_worker(tasks_root, worker_env, "bg_tasks:chatty", extra=("--limit", "16")):
        futures = await asyncio.to_thread(delay_all)
        results = await asyncio.gather(*(f.result_async(timeout=120) for f in futures))
        assert results == list(range(RUNS))
        ns = bus.layout.namespace
        events = await _fetch_all(await bus.consumer(
            "run-events", filter_subjects=[f"{ns}.events.flowbus.task-run.>"]), 3 * RUNS)
        logs = await _fetch_all(await bus.consumer(
            "run-logs", stream=bus.layout.logs_stream, filter_subjects=[f"{ns}.logs.>"]), RUNS)
    states: dict[str, list[str]] = defaultdict(list)
    for delivery in events:  # in stream order
        data = delivery.event.data
        states[data["id"]].append(data["state"]["name"])
    ids = {f.task_run_id for f in futures}
    assert set(states) == ids
    assert all(names == ["Pending", "Running", "Completed"] for names in states.values()), states
    lines: dict[str, list[str]] = defaultdict(list)
    for delivery in logs:
        for record in json.loads(delivery.data):
            lines[record["task_run_id"]].append(record["message"])
    assert set(lines) == ids
    for i, future in enumerate(futures):
        said = lines[future.task_run_id]
        assert said[:2] == [f"chatty {i} says hello", f"chatty {i} is done"], said
        assert said[-1].startswith("Finished in state Completed"), said
