"""Hostile and malformed input: jobs, records, entrypoints, settings, /metrics."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest
from pydantic import ValidationError
from runner_helpers import deploy, publish_job, runner_settings, running, schedule, wait_final

from events.bus import Bus
from events.entrypoints import EntrypointError, parse_entrypoint
from events.errors import SettingsError
from events.records import FlowRun, State, utcnow
from events.runs import Job
from events.settings import NatsSettings, check_environment
from runners import claims
from runners.settings import RunnerSettings

ROOT = Path(__file__).resolve().parents[2]

OK = """
from flowbus import flow

@flow
def ok() -> int:
    return 1
"""

BAD_JOBS = [
    b"not json",
    b"[1, 2]",
    b'{"flow_run_id": "a.b"}',
    b'{"flow_run_id": ""}',
    b'{"flow_run_id": "x", "attempt": -1}',
    json.dumps({"flow_run_id": "x" * 5000}).encode(),
]


async def test_malformed_jobs_are_terminated_and_the_runner_keeps_serving(
    bus: Bus, nats_settings: NatsSettings, flow_file: Callable[[str], str]
) -> None:
    deployment = await deploy(bus, "ok", f"{flow_file(OK)}:ok")
    async with running(bus, nats_settings, runner_settings(limit=2, isolation="inline")) as runner:
        for body in BAD_JOBS:
            await bus.publish_raw(bus.layout.runs_subject("default"), body)
        await publish_job(bus, "no-such-run", "default", None)
        run = await wait_final(bus, await schedule(bus, deployment))
    assert run.state.name == "Completed"
    assert runner.metrics.jobs.labels("malformed")._value.get() == len(BAD_JOBS)
    assert runner.metrics.jobs.labels("drop")._value.get() == 1


async def test_a_job_for_a_finished_run_is_dropped_without_running_it(
    bus: Bus, nats_settings: NatsSettings, flow_file: Callable[[str], str]
) -> None:
    deployment = await deploy(bus, "ok", f"{flow_file(OK)}:ok")
    async with running(bus, nats_settings, runner_settings(limit=1, isolation="inline")) as runner:
        run_id = await schedule(bus, deployment)
        first = await wait_final(bus, run_id)
        await publish_job(bus, run_id, "default", deployment.id, attempt=2)
        await wait_final(bus, await schedule(bus, deployment))  # the duplicate was handled first
    kv = await bus.kv(bus.layout.flow_runs)
    entry = await kv.get(run_id)
    assert entry is not None
    assert FlowRun.model_validate_json(entry.value).run_count == first.run_count == 1
    assert runner.metrics.jobs.labels("drop")._value.get() == 1


async def test_a_run_whose_deployment_is_gone_fails_saying_so(
    bus: Bus, nats_settings: NatsSettings, flow_file: Callable[[str], str]
) -> None:
    deployment = await deploy(bus, "gone", f"{flow_file(OK)}:ok")
    from events.deployments import delete_deployment

    await delete_deployment(bus, "gone")
    async with running(bus, nats_settings, runner_settings(limit=1, isolation="inline")):
        run = await wait_final(bus, await schedule(bus, deployment))
    assert run.state.name == "Failed"
    assert "deployment 'gone' of this run was not found" in (run.state.message or "")


@pytest.mark.parametrize(
    "entrypoint",
    ["", "no_colon", "file.py:", ":fn", "file.py:not-a-name", "bad module:fn", "a.py:fn()",
     "mod:fn;import os"],
)
def test_malformed_entrypoints_are_refused(entrypoint: str) -> None:
    with pytest.raises(EntrypointError, match="entrypoint"):
        parse_entrypoint(entrypoint)


async def test_an_entrypoint_naming_a_missing_file_or_attribute_fails_the_run(
    bus: Bus, nats_settings: NatsSettings, flow_file: Callable[[str], str], tmp_path: Path
) -> None:
    missing = await deploy(bus, "missing", "nope.py:main")
    wrong = await deploy(bus, "wrong", f"{flow_file(OK)}:nothing_here")
    async with running(bus, nats_settings, runner_settings(limit=2)):
        a = await wait_final(bus, await schedule(bus, missing))
        b = await wait_final(bus, await schedule(bus, wrong))
    assert a.state.name == b.state.name == "Failed"
    assert "not found" in (a.state.message or "")
    assert "has no attribute 'nothing_here'" in (b.state.message or "")


NOW = utcnow()


def _run(name: str, *, age: float, runner_id: str | None = "other", run_count: int = 1,
         start_in: float = 0) -> FlowRun:
    return FlowRun(id="r1", name="r", flow_name="f", runner_id=runner_id, run_count=run_count,
                   state=State.named(name), updated=NOW - timedelta(seconds=age),
                   expected_start_time=NOW + timedelta(seconds=start_in))


JOB = Job(flow_run_id="r1")


@pytest.mark.parametrize(
    ("run", "holding", "action"),
    [
        (_run("Scheduled", age=0, runner_id=None, run_count=0), False, "claim"),
        (_run("AwaitingRetry", age=0, runner_id=None), False, "claim"),
        (_run("AwaitingRetry", age=0, runner_id=None, start_in=30), False, "later"),
        (_run("Completed", age=0), False, "drop"),
        (_run("Running", age=0.1), False, "later"),
        (_run("Running", age=0.1, runner_id="me"), True, "later"),
        (_run("Running", age=10), False, "crashed"),
        (_run("Cancelling", age=10), False, "crashed"),
        (_run("AwaitingConcurrencySlot", age=0), False, "drop"),
    ],
)
def test_decide(run: FlowRun, holding: bool, action: str) -> None:
    decision = claims.decide(run, JOB, runner_id="me", holding=holding, now=NOW,
                             stale_after=1.0)
    assert decision.action == action, decision.reason


def test_claim_moves_pending_then_running_with_a_new_attempt() -> None:
    now = utcnow()
    pending, running_run = claims.claimed(_run("Scheduled", age=0, run_count=0), "me", now)
    assert (pending.state.name, pending.runner_id) == ("Pending", "me")
    assert (running_run.state.name, running_run.run_count, running_run.start_time) == (
        "Running", 1, now)
    assert pending.state.data.attempt == running_run.state.data.attempt == 1
    assert not running_run.state.data.body_started
    started = claims.body_started(running_run)
    assert (started.state.data.body_started, started.body_runs) == (True, 1)


def test_settings_refuse_an_ack_wait_a_live_worker_could_outlast() -> None:
    with pytest.raises(ValidationError, match="at least worker_lease"):
        RunnerSettings(heartbeat_interval=5, ack_wait=10)
    with pytest.raises(ValidationError, match="at least 2 x heartbeat_interval"):
        RunnerSettings(heartbeat_interval=2, worker_lease=3)
    settings = RunnerSettings()
    assert settings.lease < settings.stale_after <= settings.ack_wait <= 10


@pytest.mark.parametrize("field", [{"limit": 0}, {"pool": "a.b"}, {"isolation": "thread"},
                                   {"pool": "x" * 65}, {"runner_id": ""}, {"metrics_port": 70000}])
def test_settings_refuse_bad_values(field: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        RunnerSettings(**field)  # type: ignore[arg-type]


def test_a_misspelt_runner_setting_is_refused() -> None:
    with pytest.raises(SettingsError, match=r"FLOWBUS_RUNNER_LIMT.*FLOWBUS_RUNNER_LIMIT"):
        check_environment({"FLOWBUS_RUNNER_LIMT": "3"})


def test_runner_command_refuses_bad_flags(flowbus_env: dict[str, str]) -> None:
    for args, message in [(["--limit", "0"], "limit"), (["--isolation", "thread"], "isolation"),
                          (["--pool", "a b"], "pool")]:
        result = subprocess.run(
            [sys.executable, "-m", "flowbus.cli", "runner", *args],
            env={**flowbus_env, "PYTHONPATH": str(ROOT)}, cwd=ROOT, capture_output=True,
            text=True, timeout=30, check=False,
        )
        assert result.returncode == 2, result.stderr
        assert message in result.stderr


async def test_metrics_endpoint_counts_runs_and_refuses_other_requests(
    bus: Bus, nats_settings: NatsSettings, flow_file: Callable[[str], str]
) -> None:
    deployment = await deploy(bus, "ok", f"{flow_file(OK)}:ok")
    settings = runner_settings(limit=1, metrics_port=0)
    async with running(bus, nats_settings, settings) as runner, aiohttp.ClientSession() as http:
        await wait_final(bus, await schedule(bus, deployment))
        base = f"http://127.0.0.1:{runner.metrics_port}"
        expected = 'flowbus_runner_runs_total{deployment="ok",state="Completed"} 1.0'
        text = ""
        for _ in range(50):  # the count follows the record write by a moment
            async with http.get(f"{base}/metrics") as response:
                assert response.status == 200
                text = await response.text()
            if expected in text:
                break
            await asyncio.sleep(0.05)
        async with http.post(f"{base}/metrics", data=b"x" * 100_000) as response:
            assert response.status in (405, 413)
        async with http.get(f"{base}/../../etc/passwd") as response:
            assert response.status == 404
    assert expected in text
    assert "flowbus_runner_start_latency_seconds_bucket" in text
    assert "flowbus_runner_free_slots" in text
