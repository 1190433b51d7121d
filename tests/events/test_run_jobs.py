"""A run job may carry its record and revision; a job that carries them wrongly is refused."""

from __future__ import annotations

import json

import pytest

from events.bus import Bus
from events.records import State
from events.runs import MAX_JOB_BYTES, Job, parse_job
from tests.created_runs import created_run


async def test_a_job_carrying_a_record_round_trips_and_a_wrong_one_is_refused(bus: Bus) -> None:
    run = await created_run(bus, "r-job")
    job = Job.of(run, revision=3)
    assert parse_job(job.encode()) == job
    good = json.loads(job.encode())
    for change, words in (
        ({"revision": None}, "together"),
        ({"record": None}, "together"),
        ({"flow_run_id": "another-run"}, "its run's"),
        ({"attempt": 2}, "its run's"),
        ({"revision": 0}, "greater than or equal to 1"),
        ({"record": {**good["record"], "state": "Running"}}, "record.state"),
    ):
        with pytest.raises(ValueError, match=words):
            parse_job(json.dumps({**good, **change}).encode())
    # Without a revision, or too large to carry: the job goes without the record.
    assert Job.of(run).record is None
    big = run.model_copy(update={"parameters": {"x": "y" * MAX_JOB_BYTES},
                                 "state": State.named("Scheduled")})
    lean = parse_job(Job.of(big, revision=3).encode_small())
    assert (lean.flow_run_id, lean.attempt, lean.record, lean.revision) == (run.id, 1, None, None)
