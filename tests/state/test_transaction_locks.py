"""SERIALIZABLE transactions and the lock managers across processes: with a server the
lock is a JetStream lease, without one an flock."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from events.settings import NatsSettings
from flowbus import _remote
from flowbus.exceptions import ConfigurationError
from flowbus.locking.jetstream import JetStreamLockManager
from tests.state.state_helpers import ROOT

PIPELINE = """
import sys, time
from flowbus import flow, task
from flowbus.transactions import IsolationLevel, transaction

KEY, LOG = sys.argv[1], sys.argv[2]


@task
def write(data: str) -> None:
    with open(LOG, "a") as f:
        f.write(data + "\\n")
    time.sleep(1.5)


@flow
def pipeline() -> str:
    with transaction(key=KEY, isolation_level=IsolationLevel.SERIALIZABLE) as txn:
        if txn.is_committed():
            return "skipped"
        write("ran")
    return "wrote"


print(pipeline())
"""


@pytest.mark.parametrize("with_server", [True, False])
async def test_serializable_transactions_run_once_across_processes(
    state_env: dict[str, str], tmp_path: Path, with_server: bool,
) -> None:
    env = dict(state_env, FLOWBUS_HOME=str(tmp_path / "home"))
    if not with_server:
        env = {k: v for k, v in env.items() if k not in ("FLOWBUS_NATS_URL", "FLOWBUS_NAMESPACE")}
    script = tmp_path / "pipeline.py"
    script.write_text(PIPELINE)
    log = tmp_path / "ran.log"
    procs = [await asyncio.create_subprocess_exec(
        sys.executable, str(script), "race-key", str(log), env=env, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE) for _ in range(2)]
    try:
        outs = [await asyncio.wait_for(p.communicate(), 90) for p in procs]
    finally:
        for p in procs:
            if p.returncode is None:
                p.kill()
                await p.wait()
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err.decode()[-3000:]
    assert sorted(out.decode().strip().splitlines()[-1] for out, _ in outs) == ["skipped", "wrote"]
    assert log.read_text().splitlines() == ["ran"]


HOLDER = """
import sys, time
from flowbus.locking.jetstream import JetStreamLockManager

locks = JetStreamLockManager(lease_seconds=float(sys.argv[2]))
assert locks.acquire_lock("shared", holder=sys.argv[1], acquire_timeout=30)
print("held", flush=True)
time.sleep(float(sys.argv[3]))
locks.release_lock("shared", holder=sys.argv[1])
print("released", flush=True)
"""


def _start_holder(env: dict[str, str], script: Path, holder: str, lease: float, hold: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, str(script), holder, str(lease), str(hold)], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()  # bounded: the holder exits (EOF) on any failure
    if line.strip() != "held":
        proc.kill()
        _, err = proc.communicate(timeout=30)
        pytest.fail(f"holder did not take the lock: {line!r} {err[-2000:]}")
    return proc


@pytest.fixture
def server_state(nats_settings: NatsSettings) -> Iterator[None]:
    """This process keeps its run-time state on the test's server."""
    _remote.install(nats_settings)
    try:
        yield
    finally:
        _remote.reset()


@pytest.mark.usefixtures("server_state")
def test_the_jetstream_lock_manager_across_processes(state_env: dict[str, str], tmp_path: Path) -> None:
    script = tmp_path / "holder.py"
    script.write_text(HOLDER)
    locks = JetStreamLockManager(lease_seconds=2)
    holder = _start_holder(state_env, script, "other", 30, 2)
    try:
        assert locks.is_locked("shared") and locks.is_lock_holder("shared", "other")
        assert locks.acquire_lock("shared", holder="me", acquire_timeout=0) is False
        assert locks.acquire_lock("shared", holder="me", acquire_timeout=60) is True
        out, err = holder.communicate(timeout=60)
        assert holder.returncode == 0 and out.strip() == "released", err[-2000:]
        assert locks.is_lock_holder("shared", "me")
        with pytest.raises(ValueError, match="No lock held by other for transaction with key"):
            locks.release_lock("shared", holder="other")
        locks.release_lock("shared", holder="me")
        assert locks.wait_for_lock("shared", timeout=5)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.communicate(timeout=30)

    # A holder killed while holding frees the lock when its lease runs out.
    killed = _start_holder(state_env, script, "doomed", 2, 600)
    try:
        started = time.monotonic()
        killed.kill()
        killed.communicate(timeout=30)
        assert locks.acquire_lock("shared", holder="me", acquire_timeout=60) is True
        assert time.monotonic() - started < 60
        locks.release_lock("shared", holder="me")
    finally:
        if killed.poll() is None:
            killed.kill()
            killed.communicate(timeout=30)


def test_the_jetstream_lock_manager_needs_a_server() -> None:
    _remote.install(None)
    try:
        with pytest.raises(ConfigurationError, match="needs a server"):
            JetStreamLockManager().is_locked("x")
    finally:
        _remote.reset()
    with pytest.raises(ValueError, match="lease_seconds must be > 0"):
        JetStreamLockManager(lease_seconds=0)
