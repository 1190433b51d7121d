"""The run log record: one shape written by every producer, numeric levels when read."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import pytest

from events.bus import Bus
from events.logrecords import level_name, level_number, run_log_record
from events.run_logs import log_records, run_log_reader


def test_a_record_has_every_field_and_an_iso_timestamp() -> None:
    when = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    record = run_log_record(flow_run_id="r1", task_run_id="t1", name="x", level=logging.ERROR,
                            message="boom", timestamp=when)
    assert record == {"flow_run_id": "r1", "task_run_id": "t1", "name": "x", "level": 40,
                      "message": "boom", "timestamp": "2026-01-01T12:00:00+00:00"}
    fresh = run_log_record(flow_run_id=None, name="x", level=10, message="m")
    assert datetime.fromisoformat(fresh["timestamp"]).tzinfo is not None


@pytest.mark.parametrize(("stored", "number", "name"), [
    (20, 20, "INFO"), ("INFO", 20, "INFO"), ("warning", 30, "WARNING"), (55, 55, "55"),
    ("LOUD", 0, "LOUD"), (None, 0, "NOTSET"), (True, 0, "NOTSET"), ([], 0, "NOTSET"),
])
def test_levels_read_as_numbers_and_names(stored: object, number: int, name: str) -> None:
    assert level_number(stored) == number
    assert level_name(stored) == name


def test_the_reader_gives_numbers_for_records_older_versions_stored_with_names() -> None:
    old = {"flow_run_id": "r1", "task_run_id": None, "name": "flowbus.runner",
           "level": "WARNING", "message": "claimed", "timestamp": "2026-01-01T00:00:00+00:00"}
    new = run_log_record(flow_run_id="r1", name="flowbus.flow_runs", level=20, message="hi")
    assert [r["level"] for r in log_records(json.dumps([old, new]).encode())] == [30, 20]
    assert log_records(json.dumps(old).encode())[0]["level"] == 30  # a lone object
    assert log_records(b"[1, 2]") == [] and log_records(b"{oops") == []


async def test_a_run_s_reader_hands_out_numeric_levels(bus: Bus) -> None:
    subject = bus.layout.logs_subject("r1")
    legacy = {"flow_run_id": "r1", "task_run_id": None, "name": "flowbus.runner",
              "level": "ERROR", "message": "crashed", "timestamp": "2026-01-01T00:00:00+00:00"}
    await bus.publish_raw(subject, json.dumps([legacy]).encode())
    record = run_log_record(flow_run_id="r1", name="flowbus.flow_runs", level=20, message="ok")
    await bus.publish_raw(subject, json.dumps([record]).encode())
    async with run_log_reader(bus, "r1", "check") as reader:
        lines = await reader.read(10, wait=2)
    assert [(r["level"], r["message"]) for r in lines] == [(40, "crashed"), (20, "ok")]
