"""Task tag concurrency limits (Prefect's ``prefect concurrency-limit`` on tags): task runs
carrying a limited tag run one at a time per slot, across processes."""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
from pathlib import Path

from events import concurrency
from events.bus import Bus
from tests.state.state_helpers import ROOT

SCRIPT = """
import json, sys, time
from flowbus import flow, task

LOG = sys.argv[1]


@task(tags=["gpu"])
def train(i: int) -> int:
    start = time.time()
    time.sleep(0.6)
    with open(LOG, "a") as f:
        f.write(json.dumps([start, time.time()]) + "\\n")
    return i


@flow
def many() -> list:
    return [f.result() for f in [train.submit(i) for i in range(3)]]


print(many())
"""


async def test_tagged_task_runs_wait_for_the_tag_limit_across_processes(
    bus: Bus, state_env: dict[str, str], tmp_path: Path,
) -> None:
    await concurrency.set_limit(await bus.kv(bus.layout.concurrency),
                                concurrency.task_tag_limit("gpu"), 1)
    script = tmp_path / "tagged.py"
    script.write_text(SCRIPT)
    log = tmp_path / "intervals.jsonl"
    env = dict(state_env, FLOWBUS_HOME=str(tmp_path / "home"))
    procs = [await asyncio.create_subprocess_exec(
        sys.executable, str(script), str(log), env=env, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE) for _ in range(2)]
    try:
        outs = [await asyncio.wait_for(p.communicate(), 90) for p in procs]
    finally:
        for p in procs:
            if p.returncode is None:
                p.kill()
                await p.wait()
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err.decode()[-3000:]
        assert out.decode().strip().splitlines()[-1] == "[0, 1, 2]"
    intervals = sorted(json.loads(line) for line in log.read_text().splitlines())
    assert len(intervals) == 6
    for (_, end), (start, _) in itertools.pairwise(intervals):
        assert start >= end, f"two tagged task runs at once: {intervals}"
