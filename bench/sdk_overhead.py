"""Per-task overhead of the flowbus SDK (and of Prefect, when it is installed).

A flow calls a trivial task 1,000 times inline and 1,000 times through `submit`; the
figure is the flow's wall time per task minus the bare function's cost, median of
several runs. `import flowbus` is timed in fresh subprocesses.

    python bench/sdk_overhead.py [--tasks 1000] [--repeats 7]
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def import_time_ms(package: str, repeats: int) -> float:
    code = f"import time; t = time.perf_counter(); import {package}; print(time.perf_counter() - t)"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    samples = [
        float(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout)
        for _ in range(repeats)
    ]
    return statistics.median(samples) * 1000


def build(lib: Any, n: int) -> tuple[Callable[[], Any], Callable[[], Any]]:
    @lib.task
    def noop(x: int) -> int:
        return x

    @lib.flow
    def inline_flow() -> None:
        for i in range(n):
            noop(i)

    @lib.flow
    def submit_flow() -> None:
        futures = [noop.submit(i) for i in range(n)]
        for f in futures:
            f.result()

    return inline_flow, submit_flow


def per_task_us(run: Callable[[], Any], n: int, repeats: int) -> float:
    run()  # warm up: thread pool, logging set-up, imports
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        samples.append((time.perf_counter() - start) / n * 1e6)
    return statistics.median(samples)


def measure(name: str, n: int, repeats: int, label: str | None = None) -> None:
    lib = __import__(name)
    inline_flow, submit_flow = build(lib, n)
    inline = per_task_us(inline_flow, n, repeats)
    submit = per_task_us(submit_flow, n, repeats)
    print(f"{label or name:28s} inline: {inline:8.1f} us/task   submit: {submit:8.1f} us/task")


def measure_with_events(n: int, repeats: int) -> None:
    """The same flows with every state change and log record going through a BufferedSink."""
    from flowbus._sink import BufferedSink, set_event_sink

    published = 0

    def publish(batch: list[dict[str, Any]]) -> None:
        nonlocal published
        published += len(batch)

    sink = BufferedSink(publish, maxsize=10_000)
    previous = set_event_sink(sink)
    try:
        measure("flowbus", n, repeats, "flowbus (events: BufferedSink)")
    finally:
        set_event_sink(previous)
        sink.close()
    print(f"{'':28s} events published: {published}, producer blocked {sink.backpressure_count} times")


def measure_with_info_logs(n: int, repeats: int) -> None:
    """The same flows with flowbus's default INFO console logging, written to /dev/null."""
    import contextlib

    logger = logging.getLogger("flowbus")
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        with open(os.devnull, "w") as devnull, contextlib.redirect_stderr(devnull):
            inline_flow, submit_flow = build(__import__("flowbus"), n)
            inline = per_task_us(inline_flow, n, repeats)
            submit = per_task_us(submit_flow, n, repeats)
    finally:
        logger.setLevel(level)
    print(f"{'flowbus (INFO logs, devnull)':28s} inline: {inline:8.1f} us/task   submit: {submit:8.1f} us/task")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    # Log lines to a terminal cost more than the engine: measure the engine alone first
    # (WARNING), then with the default INFO lines written to /dev/null.
    os.environ.setdefault("FLOWBUS_LOGGING_LEVEL", "WARNING")
    logging.getLogger("prefect").setLevel(logging.WARNING)

    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, {args.tasks} tasks, median of {args.repeats}")
    print(f"import flowbus: {import_time_ms('flowbus', args.repeats):.1f} ms")
    measure("flowbus", args.tasks, args.repeats, "flowbus (no server, null sink)")
    measure_with_info_logs(args.tasks, args.repeats)
    measure_with_events(args.tasks, args.repeats)
    if importlib.util.find_spec("prefect") is not None:
        print(f"import prefect: {import_time_ms('prefect', args.repeats):.1f} ms")
        measure("prefect", args.tasks, args.repeats)
    else:
        print("prefect is not installed: no comparison")


if __name__ == "__main__":
    main()
