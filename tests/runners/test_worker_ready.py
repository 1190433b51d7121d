"""A worker gets a run only once it is set up: a new worker's NATS connections are not
part of any run's start (the first run on a fresh worker was the body-start tail)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from runner_helpers import deploy, runner_settings, running, schedule, wait_final

from events.bus import Bus
from events.deployments import read_result
from events.settings import NatsSettings
from runners.types import Execution, RunSpec
from runners.workers import WorkerPool

PID = """
import os
from flowbus import flow

@flow
def pid() -> int:
    return os.getpid()
"""


async def test_a_started_pool_has_only_ready_workers(nats_settings: NatsSettings) -> None:
    pool = WorkerPool(nats_settings, runner_settings(limit=2))
    await pool.start()
    try:
        idle = list(pool._idle)
        assert len(idle) == 2
        assert all(w.ready and w.process.is_alive() for w in idle)
        # The "ready" message was taken by the pool: nothing is left for a run to misread.
        assert all(w.inbox.empty() for w in idle)
    finally:
        await pool.close()
    assert all(not w.process.is_alive() for w in idle)


async def test_a_replacement_worker_gets_runs_only_once_ready(
    bus: Bus, nats_settings: NatsSettings, flow_file: Callable[[str], str]
) -> None:
    deployment = await deploy(bus, "pid", f"{flow_file(PID)}:pid")
    settings = runner_settings(limit=1, worker_max_runs=1)  # a new worker for every run
    async with running(bus, nats_settings, settings) as runner:
        pool = runner.executor
        assert isinstance(pool, WorkerPool)
        handed: list[bool] = []
        execute = pool.execute

        async def watched(spec: RunSpec) -> Execution:
            execution = await execute(spec)
            handed.append(all(w.ready for w in pool._busy))
            return execution

        pool.execute = watched  # type: ignore[method-assign]
        pids: list[Any] = []
        for _ in range(3):
            run = await wait_final(bus, await schedule(bus, deployment))
            assert run.state.name == "Completed"
            pids.append(await read_result(bus, run))
        assert runner.executor.restarts() == 0  # recycling is not a restart
    assert len(set(pids)) == 3
    assert handed == [True, True, True]
