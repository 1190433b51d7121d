"""Fixtures of the run-time state tests: runner processes on one NATS, each with its own disk."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from events.secretbox import SecretBox
from tests.state.state_helpers import ROOT


@pytest.fixture
def state_env(flowbus_env: dict[str, str]) -> dict[str, str]:
    """The test namespace's environment, with one secrets key shared by every process."""
    return {**flowbus_env, "FLOWBUS_SECRETS_KEY": SecretBox.generate_key(),
            "PYTHONPATH": str(ROOT)}


@pytest.fixture
def flow_source(tmp_path: Path) -> Callable[[str], str]:
    """Write flow source into the runners' code root (``tmp_path``); returns its entrypoint
    path, relative to that root as every entrypoint is."""

    def write(source: str) -> str:
        name = f"flows_{uuid.uuid4().hex[:8]}.py"
        (tmp_path / name).write_text(textwrap.dedent(source))
        return name

    return write


@pytest.fixture
def start_runner(state_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[[str], subprocess.Popen[bytes]]]:
    """Start ``flowbus runner --pool POOL`` as a process with a FLOWBUS_HOME of its own."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(pool: str) -> subprocess.Popen[bytes]:
        home = tmp_path / f"home-{pool}"
        env = {**state_env, "FLOWBUS_HOME": str(home), "FLOWBUS_RUNNER_FETCH_WAIT": "0.2",
               "FLOWBUS_RUNNER_CODE_ROOT": str(tmp_path)}
        with open(tmp_path / f"runner-{pool}.log", "wb") as log:  # the child keeps its own copy
            proc = subprocess.Popen([sys.executable, "-m", "flowbus.cli", "runner", "--pool", pool],
                                    env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
