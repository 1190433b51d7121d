"""SERIALIZABLE cache isolation: processes that compute one cache key at the same time run
the body once, with a server (a KV lock) and without one (a file lock)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from tests.state.state_helpers import ROOT

SCRIPT = """
import sys, time
from flowbus import flow, task
from flowbus.cache_policies import INPUTS
from flowbus.transactions import IsolationLevel

LOG = sys.argv[1]
LEVEL = sys.argv[2]


@task(cache_policy=INPUTS.configure(isolation_level=LEVEL))
def slow(x: int) -> int:
    with open(LOG, "a") as f:
        f.write("ran\\n")
    time.sleep(1.5)
    return x + 1


@flow
def once() -> str:
    state = slow(41, return_state=True)
    assert state.result() == 42
    return state.name


print(once())
"""


async def _race(env: dict[str, str], script: Path, log: Path, level: str) -> list[str]:
    procs = [await asyncio.create_subprocess_exec(
        sys.executable, str(script), str(log), level, env=env, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE) for _ in range(2)]
    try:
        outs = [await asyncio.wait_for(p.communicate(), 60) for p in procs]
    finally:
        for p in procs:
            if p.returncode is None:
                p.kill()
                await p.wait()
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err.decode()[-3000:]
    return sorted(out.decode().strip().splitlines()[-1] for out, _ in outs)


@pytest.mark.parametrize("with_server", [True, False])
async def test_serializable_runs_the_body_once_across_processes(
    state_env: dict[str, str], tmp_path: Path, with_server: bool,
) -> None:
    env = dict(state_env, FLOWBUS_HOME=str(tmp_path / "home"))
    if not with_server:
        env = {k: v for k, v in env.items() if k not in ("FLOWBUS_NATS_URL", "FLOWBUS_NAMESPACE")}
    script = tmp_path / "race.py"
    script.write_text(SCRIPT)
    log = tmp_path / "ran.log"
    names = await _race(env, script, log, "SERIALIZABLE")
    assert names == ["Cached", "Completed"]
    assert log.read_text().count("ran") == 1


def test_an_unknown_isolation_level_is_refused() -> None:
    from flowbus.cache_policies import INPUTS

    with pytest.raises(ValueError, match="READ_COMMITTED, SERIALIZABLE"):
        INPUTS.configure(isolation_level="SNAPSHOT")


def test_concurrent_runs_without_isolation_may_both_run_but_end_consistent(
    state_env: dict[str, str], tmp_path: Path,
) -> None:
    env = dict(state_env, FLOWBUS_HOME=str(tmp_path / "home"))
    script = tmp_path / "race.py"
    script.write_text(SCRIPT)
    log = tmp_path / "ran.log"
    procs = [subprocess.Popen([sys.executable, str(script), str(log), "READ_COMMITTED"], env=env,
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(2)]
    try:
        outs = [p.communicate(timeout=60) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert all(p.returncode == 0 for p in procs), [e.decode()[-2000:] for _, e in outs]
    assert 1 <= log.read_text().count("ran") <= 2
    # The record either wrote is complete: a third process hits it.
    third = subprocess.run([sys.executable, str(script), str(log), "READ_COMMITTED"], env=env,
                           cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert third.stdout.strip().splitlines()[-1] == "Cached", third.stderr[-2000:]
