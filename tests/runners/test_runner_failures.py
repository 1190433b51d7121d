"""Broken code, timeouts and crashes end the run, never the runner."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable

import pytest
from runner_helpers import deploy, logs_of, runner_settings, running, schedule, wait_final

from events.bus import Bus
from events.deployments import read_result
from events.settings import NatsSettings

OK = """
from flowbus import flow

@flow
def ok() -> int:
    return 1
"""


@pytest.mark.parametrize(
    ("source", "error"),
    [
        ("import no_such_module_here\n", "ModuleNotFoundError"),
        ("def broken(:\n", "SyntaxError"),
    ],
    ids=["import-error", "syntax-error"],
)
async def test_unloadable_flow_fails_with_traceback_and_runner_keeps_serving(
    bus: Bus, nats_settings: NatsSettings, flow_file: Callable[[str], str], source: str, error: str
) -> None:
    bad = await deploy(bus, "bad", f"{flow_file(source)}:main")
    good = await deploy(bus, "good", f"{flow_file(OK)}:ok")
    async with running(bus, nats_settings, runner_settings(limit=1)):
        bad_run = await wait_final(bus, await schedule(bus, bad))
        good_run = await wait_final(bus, await schedule(bus, good))
    assert bad_run.state.name == "Failed"
    assert error in (bad_run.state.message or "")
    assert "Traceback" in (bad_run.state.message or "")
    assert any(error in r["message"] and "Traceback" in r["message"]
               for r in await logs_of(bus, bad_run.id))
    assert good_run.state.name == "Completed"


RAISES = """
from flowbus import flow

@flow
def boom() -> None:
    raise ValueError("no good")
"""


async def test_flow_exception_fails_run_with_traceback_in_message(
    bus: Bus, nats_settings: NatsSettings, flow_file: Callable[[str], str]
) -> None:
    deployment = await deploy(bus, "boom", f"{flow_file(RAISES)}:boom")
    async with running(bus, nats_settings, runner_settings(limit=1)):
        run = await wait_final(bus, await schedule(bus, deployment))
    assert run.state.name == "Failed"
    assert "ValueError: no good" in (run.state.message or "")
    assert "Traceback" in (run.state.message or "")
    assert run.result_ref is None


IGNORES_TIMEOUT = """
import signal, time
from flowbus import flow

@flow(timeout_seconds=0.3)
async def stubborn() -> str:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(30)          # blocks the loop: nothing in-process can interrupt it
    return "finished"
"""


async def test_flow_ignoring_its_timeout_is_stopped_and_fails(
    bus: Bus, nats_settings: NatsSettings, flow_file: Callable[[str], str]
) -> None:
    deployment = await deploy(bus, "stubborn", f"{flow_file(IGNORES_TIMEOUT)}:stubborn")
    good = await deploy(bus, "good", f"{flow_file(OK)}:ok")
    async with running(bus, nats_settings, runner_settings(limit=1)) as runner:
        run = await wait_final(bus, await schedule(bus, deployment), max_wait=10)
        after = await wait_final(bus, await schedule(bus, good))
    assert run.state.name == "Failed"
    assert "timeout of 0.3 seconds" in (run.state.message or "")
    assert after.state.name == "Completed"
    assert runner.executor.restarts() == 1


EXITS = """
import os
from flowbus import flow

@flow
def die() -> None:
    os._exit(3)
"""


async def test_worker_dying_mid_run_crashes_only_that_run(
    bus: Bus, nats_settings: NatsSettings, flow_file: Callable[[str], str]
) -> None:
    deployment = await deploy(bus, "die", f"{flow_file(EXITS)}:die")
    good = await deploy(bus, "good", f"{flow_file(OK)}:ok")
    async with running(bus, nats_settings, runner_settings(limit=1)):
        run = await wait_final(bus, await schedule(bus, deployment))
        after = await wait_final(bus, await schedule(bus, good))
    assert run.state.name == "Crashed"
    assert "exited with code 3" in (run.state.message or "")
    assert after.state.name == "Completed"


HOG = """
from flowbus import flow

@flow
def hog() -> int:
    blob = bytearray(400 * 1024 * 1024)
    import time; time.sleep(5)
    return len(blob)
"""


async def test_worker_past_its_memory_limit_is_killed(
    bus: Bus, nats_settings: NatsSettings, flow_file: Callable[[str], str]
) -> None:
    deployment = await deploy(bus, "hog", f"{flow_file(HOG)}:hog")
    settings = runner_settings(limit=1, worker_max_memory_mb=200)
    async with running(bus, nats_settings, settings):
        run = await wait_final(bus, await schedule(bus, deployment))
    assert run.state.name == "Crashed"
    assert "more than the runner's limit of 200 MiB" in (run.state.message or "")


PID = """
import os
from flowbus import flow

@flow
def pid() -> int:
    return os.getpid()
"""


async def test_a_worker_that_died_while_idle_is_replaced_before_it_gets_a_run(
    bus: Bus, nats_settings: NatsSettings, flow_file: Callable[[str], str]
) -> None:
    deployment = await deploy(bus, "pid", f"{flow_file(PID)}:pid")
    async with running(bus, nats_settings, runner_settings(limit=1)) as runner:
        first = await wait_final(bus, await schedule(bus, deployment))
        worker_pid = await read_result(bus, first)
        os.kill(worker_pid, signal.SIGKILL)
        await asyncio.sleep(0.2)
        second = await wait_final(bus, await schedule(bus, deployment))
        assert runner.executor.restarts() == 1
    assert second.state.name == "Completed"
    assert await read_result(bus, second) != worker_pid
