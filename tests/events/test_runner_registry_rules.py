"""The runner registry's staleness and expiry rules (pure logic)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from events.runner_registry import RunnerRecord, record_key, record_ttl


def record(interval: float, beat: datetime) -> RunnerRecord:
    return RunnerRecord(runner_id="r", pool="p", limit=1, in_use=0, isolation="inline",
                        host="h", pid=1, started=beat, heartbeat=beat, heartbeat_interval=interval)


def test_a_record_is_stale_after_two_missed_beats_and_expires_after_three() -> None:
    beat = datetime(2026, 1, 1, tzinfo=UTC)
    two = record(2.0, beat)
    assert not two.is_stale(beat + timedelta(seconds=5))
    assert two.is_stale(beat + timedelta(seconds=5.1))
    assert record_ttl(2.0) == 7 and record_ttl(0.1) == 2 and record_ttl(0.5) == 3
    assert record_ttl(2.0) > two.stale_after()


def test_a_runner_id_that_is_no_valid_key_is_stored_under_its_hash() -> None:
    assert record_key("host-12-abc") == "host-12-abc"
    odd = record_key("host.with dots/and spaces")
    assert odd.startswith("h-") and odd == record_key("host.with dots/and spaces")
    assert odd != record_key("host.with dots/and spaces!")
