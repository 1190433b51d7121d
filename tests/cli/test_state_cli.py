"""``flowbus artifact``, ``flowbus concurrency-limit`` and ``flowbus block`` as a user runs
them: real processes against the test NATS, state written by the SDK in another process
(malformed arguments are refused by the same command run in this process)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from events.bus import Bus
from tests.cli_here import flowbus_here, invoke_here

ROOT = Path(__file__).resolve().parents[2]


def flowbus(*args: str, env: dict[str, str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flowbus.cli", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, check=False)


def python(source: str, env: dict[str, str]) -> None:
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(source)], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def generated_key(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A key made by ``flowbus block generate-key``, once for the module (a process start
    costs seconds on a loaded machine; the key itself needs no namespace)."""
    plain = {k: v for k, v in os.environ.items() if not k.startswith("FLOWBUS_")}
    plain["FLOWBUS_HOME"] = str(tmp_path_factory.mktemp("generate-key-home"))
    key = subprocess.run([sys.executable, "-m", "flowbus.cli", "block", "generate-key"],
                         env=plain, cwd=ROOT, capture_output=True, text=True, timeout=30,
                         check=True).stdout.strip()
    Fernet(key.encode())  # a usable key
    return key


@pytest.fixture
def env(flowbus_env: dict[str, str], generated_key: str) -> dict[str, str]:
    return {**flowbus_env, "FLOWBUS_SECRETS_KEY": generated_key, "PYTHONPATH": str(ROOT)}


async def test_artifacts_made_by_a_flow_are_listed_and_inspected(env: dict[str, str], bus: Bus) -> None:
    await asyncio.to_thread(python, """
        from flowbus import flow
        from flowbus.artifacts import create_markdown_artifact

        @flow
        def report(n: int) -> None:
            create_markdown_artifact(f"# report {n}", key="weekly")

        report(1)
        report(2)
    """, env)
    listed = await asyncio.to_thread(flowbus, "artifact", "ls", "--key", "weekly", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    assert [a["data"] for a in json.loads(listed.stdout)] == ["# report 2", "# report 1"]
    # The other answers come from the commands run here (the program ran above).
    latest = await flowbus_here("artifact", "inspect", "weekly", env=env)
    assert json.loads(latest.stdout)["data"] == "# report 2"
    history = await flowbus_here("artifact", "inspect", "weekly", "--history", env=env)
    assert len(json.loads(history.stdout)) == 2
    missing = await flowbus_here("artifact", "inspect", "nothing-here", env=env)
    assert missing.returncode == 1 and "no artifact with key 'nothing-here'" in missing.stderr


@pytest.mark.parametrize("args", [["artifact", "inspect", "Bad Key!"], ["artifact", "inspect", "x" * 5000],
                                  ["artifact", "ls", "--key", "../etc"], ["artifact", "ls", "--limit", "0"],
                                  ["concurrency-limit", "create", "a b", "--limit", "1"],
                                  ["concurrency-limit", "create", "db", "--limit", "-1"],
                                  ["concurrency-limit", "create", "db", "--limit", "99999999"],
                                  ["concurrency-limit", "create", "db", "--limit", "1",
                                   "--slot-decay-per-second", "0"],
                                  ["concurrency-limit", "create", "db"],
                                  ["block", "inspect", "no-slash"], ["block", "delete", "../../x/y"],
                                  ["block", "inspect", "secret/" + "n" * 5000]])
def test_malformed_arguments_exit_2_with_a_message(args: list[str], env: dict[str, str]) -> None:
    result = invoke_here(*args, env=env)  # the command's answer; no process needed
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and result.stderr.strip()


async def test_concurrency_limits_are_created_listed_inspected_and_deleted(
    env: dict[str, str], bus: Bus,
) -> None:
    for args in (["db", "--limit", "2"], ["github", "--limit", "5", "--slot-decay-per-second", "1"],
                 ["gpu", "--limit", "1", "--tag"]):
        made = await flowbus_here("concurrency-limit", "create", *args, env=env)
        assert made.returncode == 0, made.stderr
    await asyncio.to_thread(python, """
        from flowbus.concurrency.sync import concurrency
        with concurrency("db", occupy=1, strict=True):
            import subprocess, sys, json
            out = subprocess.run([sys.executable, "-m", "flowbus.cli", "concurrency-limit", "inspect",
                                  "db"], capture_output=True, text=True, check=True).stdout
            assert json.loads(out)["active_slots"] == 1, out
    """, env)
    listed = await flowbus_here("concurrency-limit", "ls", "--json", env=env)
    limits = {limit["name"]: limit for limit in json.loads(listed.stdout)}
    assert set(limits) == {"db", "github", "task-tag-gpu"}
    assert limits["db"]["active_slots"] == 0 and limits["github"]["slot_decay_per_second"] == 1
    gone = await flowbus_here("concurrency-limit", "delete", "gpu", "--tag", env=env)
    assert gone.returncode == 0
    again = await flowbus_here("concurrency-limit", "delete", "gpu", "--tag", env=env)
    assert again.returncode == 1 and "no concurrency limit named 'task-tag-gpu'" in again.stderr


async def test_blocks_are_listed_masked_and_deleted(env: dict[str, str], bus: Bus) -> None:
    await asyncio.to_thread(python, """
        from flowbus.blocks.system import Secret, JSON
        Secret(value={"user": "u", "password": "hunter2"}).save("creds")
        JSON(value={"a": 1}).save("settings")
    """, env)
    listed = await asyncio.to_thread(flowbus, "block", "ls", "--json", env=env)
    assert "hunter2" not in listed.stdout
    blocks = {f"{b['block_type']}/{b['name']}": b for b in json.loads(listed.stdout)}
    assert blocks["secret/creds"]["data"] == {"value": "********"}
    assert blocks["json/settings"]["data"] == {"value": {"a": 1}}
    shown = await asyncio.to_thread(flowbus, "block", "inspect", "secret/creds", env=env)
    assert "hunter2" not in shown.stdout and shown.returncode == 0
    deleted = await asyncio.to_thread(flowbus, "block", "delete", "secret/creds", env=env)
    assert deleted.returncode == 0
    # Without the key a process cannot open what is left, and is told which setting is missing.
    no_key = {k: v for k, v in env.items() if k != "FLOWBUS_SECRETS_KEY"}
    result = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-c", "from flowbus.blocks.system import Secret; "
                         "Secret(value='x').save('other')"],
        env=no_key, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode != 0 and "FLOWBUS_SECRETS_KEY" in result.stderr
    # The test's own key never leaked into this process (which has the session's key).
    assert os.environ.get("FLOWBUS_SECRETS_KEY") != env["FLOWBUS_SECRETS_KEY"]
