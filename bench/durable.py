"""What durable task reuse costs and saves, per task, in a run with a record.

A flow calls a trivial task N times inline, run through `run_flow` as a runner runs
it, against an embedded nats-server: with no record (``record_attempt=0``: nothing
stored), as a first attempt (each completed task's result stored), and as a second
attempt of the same run (each task's result read back, bodies not run). Prints the
median time per task of several runs, and the load average.

    python bench/durable.py [--tasks 200] [--repeats 5]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    from events.embedded import EmbeddedNats

    with tempfile.TemporaryDirectory() as data, EmbeddedNats(Path(data)) as server:
        os.environ["FLOWBUS_NATS_URL"] = server.url
        os.environ["FLOWBUS_NAMESPACE"] = f"bench{uuid.uuid4().hex[:6]}"
        os.environ["FLOWBUS_LOGGING_LEVEL"] = "WARNING"
        from flowbus import flow, task
        from flowbus._engine import run_flow

        logging.getLogger("flowbus").setLevel(logging.WARNING)

        @task
        def noop(x: int) -> int:
            return x

        @flow
        def many(n: int) -> int:
            return sum(noop(i) for i in range(n))

        run_flow(many, {"n": 5})  # warm up: connection, buckets, imports
        figures: dict[str, list[float]] = {"no record": [], "attempt 1 (store)": [],
                                           "attempt 2 (reuse)": []}
        for _ in range(args.repeats):
            run_id = str(uuid.uuid4())
            for label, attempt, rid in (("no record", 0, None), ("attempt 1 (store)", 1, run_id),
                                        ("attempt 2 (reuse)", 2, run_id)):
                start = time.perf_counter()
                state = run_flow(many, {"n": args.tasks}, flow_run_id=rid, record_attempt=attempt)
                elapsed = time.perf_counter() - start
                assert state.is_completed(), state
                figures[label].append(elapsed / args.tasks * 1e6)
    load = os.getloadavg()
    print(f"durable task reuse, {args.tasks} inline tasks per run, median of {args.repeats}")
    for label, samples in figures.items():
        print(f"  {label:<20} {statistics.median(samples):8.0f} us/task")
    print(f"  load average: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} ({os.cpu_count()} cpus)")


if __name__ == "__main__":
    main()
