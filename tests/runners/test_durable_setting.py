"""Durable task reuse as a deployment setting, and for results too large for a KV value.

A run of a deployment with ``durable_tasks: false`` runs its completed tasks again in a
crash retry (Prefect's behaviour); with the default, a task completed before the crash
is not run again, even when its result is a few MB (stored in the results object store,
the KV record holding a reference to it).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from runner_helpers import (
    RunnerProcess,
    deploy_checked,
    runner_settings,
    running,
    schedule,
    wait_state,
    wait_until,
)

from events.bus import Bus
from events.deployments import read_result
from events.settings import NatsSettings

FAST_ENV = {"heartbeat_interval": "0.25", "ack_wait": "2.0", "fetch_wait": "0.2", "limit": "2"}

# The task's result is random bytes: a rerun would give other bytes, a reuse the same.
CRASHY = """
import hashlib, os, time
from flowbus import flow, task


@task
def charge(journal: str, size: int) -> bytes:
    with open(journal, "a") as f:
        f.write(f"charged {os.getpid()}\\n")
    return os.urandom(size)


@flow(retries=1)
def checkout(journal: str, gate: str, size: int) -> str:
    blob = charge(journal, size)
    digest = hashlib.sha256(blob).hexdigest()
    with open(journal, "a") as f:
        f.write(f"waiting {digest} {len(blob)} {os.getpid()}\\n")
    while not os.path.exists(gate):
        time.sleep(0.05)
    return digest
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def crash_and_retry(bus: Bus, nats_settings: NatsSettings, flowbus_env: dict[str, str],
                          tmp_path: Path, *, durable_tasks: bool, size: int) -> tuple[list[str], object]:
    """Deploy, run on a runner process, SIGKILL it after the task completed, let another
    runner retry; the journal's lines and the run's result."""
    journal, gate = tmp_path / "journal.txt", tmp_path / "gate"
    deployment = await deploy_checked(bus, "checkout", CRASHY, "checkout", root=tmp_path / "code",
                                      durable_tasks=durable_tasks)
    assert deployment.durable_tasks is durable_tasks
    victim = RunnerProcess(flowbus_env, tmp_path / "victim.log", **FAST_ENV, runner_id="victim")
    try:
        await victim.wait_ready()
        run_id = await schedule(bus, deployment,
                                {"journal": str(journal), "gate": str(gate), "size": size})
        await wait_until(lambda: journal.exists() and "waiting" in journal.read_text(), 60)
        os.kill(victim.process.pid, signal.SIGKILL)
        victim.process.wait(5)
    finally:
        victim.stop()
    worker = int(journal.read_text().split()[-1])
    await wait_until(lambda: not alive(worker), 30)  # the orphaned attempt is gone for good
    gate.write_text("open")
    async with running(bus, nats_settings, runner_settings(limit=1, runner_id="rescuer")):
        done = await wait_state(bus, run_id, "Completed", 90)
    assert done.run_count == 2 and done.runner_id == "rescuer"
    assert done.durable_tasks is durable_tasks
    return journal.read_text().splitlines(), await read_result(bus, done)


async def test_with_durable_tasks_off_a_crash_retry_runs_the_completed_task_again(
    bus: Bus, nats_settings: NatsSettings, flowbus_env: dict[str, str], tmp_path: Path
) -> None:
    lines, result = await crash_and_retry(bus, nats_settings, flowbus_env, tmp_path,
                                                durable_tasks=False, size=64)
    assert [line.split()[0] for line in lines] == ["charged", "waiting", "charged", "waiting"]
    first, second = lines[1].split()[1], lines[3].split()[1]
    assert first != second  # the task ran again: other random bytes
    assert result == second


async def test_a_result_of_a_few_mb_is_reused_from_the_object_store(
    bus: Bus, nats_settings: NatsSettings, flowbus_env: dict[str, str], tmp_path: Path
) -> None:
    size = 3 * 1024 * 1024  # far above what a KV message may hold
    lines, result = await crash_and_retry(bus, nats_settings, flowbus_env, tmp_path,
                                                durable_tasks=True, size=size)
    assert [line.split()[0] for line in lines] == ["charged", "waiting", "waiting"]
    first, second = lines[1].split(), lines[2].split()
    assert first[1] == second[1] and second[2] == str(size)  # the very same bytes came back
    assert result == first[1]
    # The bytes are in the results object store; the cache KV holds a small reference.
    objects = await bus.objects(bus.layout.results)
    stored = [name for name in await objects.names() if name.startswith("tasks/cache/")]
    assert len(stored) == 1 and len(await objects.get(stored[0])) > size
    cache = await bus.kv(bus.layout.cache)
    values = [entry.value for key in await cache.keys() if (entry := await cache.get(key))]
    assert values and all(len(value) < 1024 for value in values)
    assert any(stored[0].removeprefix("tasks/").encode() in value for value in values)


@pytest.mark.parametrize("value", ["no", 0, "false", None])
async def test_a_deployment_refuses_a_durable_tasks_setting_that_is_not_a_boolean(
    tmp_path: Path, value: object
) -> None:
    from flowbus.project import ProjectError, load_project

    project = tmp_path / "flowbus.yaml"
    project.write_text(f"deployments:\n  - name: d\n    entrypoint: flows.py:f\n"
                       f"    durable_tasks: {value!r}\n")
    with pytest.raises(ProjectError, match=r"durable_tasks.*must be true or false"):
        load_project(project)
