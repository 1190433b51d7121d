"""The command line, run as a user runs it: real processes against the test NATS."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from events.bus import Bus
from events.cloudevent import CloudEvent

ROOT = Path(__file__).resolve().parents[2]


def flowbus(*args: str, env: dict[str, str], timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flowbus.cli", *args],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False,
    )


def test_version(flowbus_env: dict[str, str]) -> None:
    result = flowbus("version", env=flowbus_env)
    assert result.returncode == 0 and result.stdout.startswith("flowbus ")


async def test_emit_stores_the_event(flowbus_env: dict[str, str], bus: Bus) -> None:
    result = await asyncio.to_thread(
        flowbus, "events", "emit", "com.example.order.created", "--source", "/shop",
        "--subject", "order/7", "--data", '{"total": 12}', "--id", "o-7", "--ext", "region=eu",
        env=flowbus_env,
    )
    assert result.returncode == 0, result.stderr
    assert "o-7 stored as #1" in result.stdout
    consumer = await bus.consumer("check")
    [delivery] = await consumer.fetch(5, max_wait=1)
    ev = delivery.event
    assert (ev.type, ev.source, ev.subject, ev.data) == ("com.example.order.created", "/shop",
                                                         "order/7", {"total": 12})
    assert ev.extensions == {"region": "eu"}


def test_emit_twice_with_one_id_is_stored_once(flowbus_env: dict[str, str]) -> None:
    args = ("events", "emit", "a.b", "--id", "same")
    assert "#1" in flowbus(*args, env=flowbus_env).stdout
    again = flowbus(*args, env=flowbus_env)
    assert again.returncode == 0 and "duplicate" in again.stdout


async def test_tail_shows_past_and_new_events(flowbus_env: dict[str, str], bus: Bus) -> None:
    await bus.publish(CloudEvent.create("com.github.push", source="/gh", data={"ref": "main"}))
    await bus.publish(CloudEvent.create("com.gitlab.push", source="/gl"))
    tail = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "flowbus.cli", "events", "tail", "com.github.*", "--since", "5m",
        "--count", "2", env=flowbus_env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        await asyncio.sleep(1.0)
        await bus.publish(CloudEvent.create("com.github.release", source="/gh"))
        out, err = await asyncio.wait_for(tail.communicate(), 20)
    finally:
        if tail.returncode is None:
            tail.kill()
    assert tail.returncode == 0, err
    lines = out.decode().strip().splitlines()
    assert len(lines) == 2
    assert "com.github.push" in lines[0] and '"ref": "main"' in lines[0]
    assert "com.github.release" in lines[1]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("events", "emit", "bad type"), "not a valid event name"),
        (("events", "emit", "a.>"), "not a valid event name"),
        (("events", "emit", "a.b", "--data", "{oops"), "not valid JSON"),
        (("events", "emit", "a.b", "--ext", "novalue"), "NAME=VALUE"),
        (("events", "emit", "a.b", "--ext", "UPPER=1"), "lowercase"),
        (("events", "emit", "a.b", "--data", "@/nonexistent/file.json"), "cannot read"),
        (("events", "tail", "a b"), "not a valid event name"),
        (("events", "tail", "--since", "soon"), "not a duration"),
        (("events", "tail", "--count", "0"), "0"),
        (("nope",), "No such command"),
    ],
)
def test_bad_input_is_named(args: tuple[str, ...], fragment: str, flowbus_env: dict[str, str]) -> None:
    result = flowbus(*args, env=flowbus_env)
    assert result.returncode in (1, 2)
    assert fragment in result.stderr
    assert "Traceback" not in result.stderr


def test_oversized_event_from_a_file_is_refused(flowbus_env: dict[str, str], tmp_path: Path) -> None:
    big = tmp_path / "big.json"
    big.write_text('"' + "x" * 1_100_000 + '"')
    result = flowbus("events", "emit", "a.b", "--data", f"@{big}", env=flowbus_env)
    assert result.returncode == 1 and "over the limit of 1048576 bytes" in result.stderr


def test_data_from_stdin(flowbus_env: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "flowbus.cli", "events", "emit", "a.b", "--data", "-"],
        env=flowbus_env, cwd=ROOT, input='{"from": "stdin"}', capture_output=True, text=True,
        timeout=20, check=False,
    )
    assert result.returncode == 0 and "stored as #1" in result.stdout


def test_unreachable_nats_is_one_clear_line(flowbus_env: dict[str, str]) -> None:
    env = {**flowbus_env, "FLOWBUS_NATS_URL": "nats://127.0.0.1:1"}
    result = flowbus("events", "emit", "a.b", env=env)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "Error: cannot reach NATS at nats://127.0.0.1:1: no server answered; is nats-server "
        "running there (FLOWBUS_NATS_URL)?"
    )


def test_misspelt_setting_is_refused(flowbus_env: dict[str, str]) -> None:
    result = flowbus("events", "emit", "a.b", env={**flowbus_env, "FLOWBUS_NAMESPCE": "x"})
    assert result.returncode == 2 and "did you mean FLOWBUS_NAMESPACE" in result.stderr


async def test_nats_status_lists_streams_and_consumers(flowbus_env: dict[str, str], bus: Bus) -> None:
    await bus.publish(CloudEvent.create("a.b", source="/s"))
    await bus.consumer("status-check")
    result = await asyncio.to_thread(flowbus, "nats", "status", env=flowbus_env)
    assert result.returncode == 0, result.stderr
    assert bus.layout.events_stream in result.stdout and "status-check" in result.stdout


def test_dev_starts_and_stops_cleanly(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWBUS_")}
    env["FLOWBUS_HOME"] = str(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "flowbus.cli", "dev", "--nats-port", "0", "--gateway-port", "0"],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        assert proc.stdout is not None
        lines = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if "ready" in line or not line:
                break
        assert any("flowbus dev is ready" in line for line in lines), "".join(lines)
        url = next(line.split()[2] for line in lines if line.startswith("NATS JetStream"))
        emitted = flowbus("events", "emit", "com.example.hello",
                          env={**env, "FLOWBUS_NATS_URL": url})
        assert emitted.returncode == 0, emitted.stderr
        # Without FLOWBUS_NATS_URL the CLI finds this dev's NATS by itself; the banner
        # also says how to point other tools at it.
        assert any(line.strip() == f"export FLOWBUS_NATS_URL={url}" for line in lines), lines
        assert (tmp_path / "dev" / "nats.url").read_text().strip() == url
        found = flowbus("nats", "status", env=env)
        assert found.returncode == 0 and "FLOWBUS_EVENTS" in found.stdout, found.stderr
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, rest
    assert "flowbus dev stopped." in rest
    assert (tmp_path / "dev" / "jetstream").is_dir()
    assert not (tmp_path / "dev" / "nats.url").exists()
