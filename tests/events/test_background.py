"""The lease rules of background task runs, as pure decisions over the record."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from events import background as bg
from events.records import utcnow


def record() -> bg.TaskRunRecord:
    return bg.scheduled_record(task_run_id="r1", name="add-r1", task_key="m.add", task_name="add",
                               tags=[], parameters={"x": 1}, wait_for=[])


def test_a_scheduled_run_is_claimed_as_a_new_running_attempt() -> None:
    decision = bg.decide(record(), now=utcnow(), lease=10)
    assert decision.action == "claim"
    running = bg.claimed(record(), "w1", decision)
    assert (running.state.name, running.worker_id, running.run_count, running.crashes) == (
        "Running", "w1", 1, 0)
    assert running.state.data.attempt == 1 and running.start_time is not None


def test_a_held_run_is_left_alone_until_its_lease_runs_out() -> None:
    running = bg.claimed(record(), "w1", bg.decide(record(), now=utcnow(), lease=10))
    later = bg.decide(running, now=running.updated + timedelta(seconds=4), lease=10)
    assert later.action == "later" and 5.9 < later.delay <= 6.0
    stale = bg.decide(running, now=running.updated + timedelta(seconds=11), lease=10)
    assert stale.action == "take-over" and "w1" in stale.reason
    again = bg.claimed(running, "w2", stale)
    assert (again.worker_id, again.run_count, again.crashes) == ("w2", 2, 1)
    assert "retried after a crash" in (again.state.message or "")


def test_the_third_cut_off_ends_the_run_crashed() -> None:
    run = record()
    for worker in ("w1", "w2", "w3"):
        run = bg.claimed(run, worker, bg.decide(run, now=utcnow(), lease=10))
        run = run.model_copy(update={"updated": utcnow() - timedelta(seconds=60)})
    final = bg.claimed(run, "w4", bg.decide(run, now=utcnow(), lease=10))
    assert final.state.name == "Crashed" and final.crashes == bg.MAX_CRASHES
    assert bg.decide(final, now=utcnow(), lease=10).action == "drop"


def test_a_finished_run_keeps_its_result_reference() -> None:
    running = bg.claimed(record(), "w1", bg.decide(record(), now=utcnow(), lease=10))
    done = bg.finished(running, "Completed", None, result_key="r1", result_serializer="json")
    assert done.state.is_final() and done.result_key == "r1" and done.end_time is not None
    assert bg.TaskRunRecord.decode(done.encode()) == done


@pytest.mark.parametrize("raw", [
    b"{}", b"[]", b'{"task_run_id": "../x", "task_key": "k"}',
    b'{"task_run_id": "a", "task_key": ""}',
    b'{"task_run_id": "a", "task_key": "k", "parameters": "not base64!"}',
    b'{"task_run_id": "a", "task_key": "k", "extra": 1}',
])
def test_malformed_jobs_are_refused(raw: bytes) -> None:
    with pytest.raises(ValidationError):
        bg.TaskJob.model_validate_json(raw)


def test_job_parameters_travel_as_base64() -> None:
    job = bg.TaskJob(task_run_id="a", task_key="k", parameters=b'{"x":1}')
    assert bg.TaskJob.model_validate_json(job.model_dump_json()) == job


def test_subjects_and_consumers_are_safe_for_any_task_key() -> None:
    key = "my module.<locals>.f>*"
    token = bg.task_token(key)
    assert token.isalnum() and len(token) == 24
    assert bg.task_subject("flowbus", key) == f"flowbus.tasks.{token}"
    assert bg.consumer_name(key) == f"tasks-{token}"
