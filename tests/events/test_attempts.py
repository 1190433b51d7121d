"""Attempt outcomes: written once, by the attempt or by its takeover, never both."""

from __future__ import annotations

from events import attempts
from events.bus import Bus


async def test_an_outcome_recorded_first_is_what_a_takeover_finds(bus: Bus) -> None:
    kv = await bus.kv(bus.layout.attempts)
    mine = await attempts.record_outcome(kv, "run-1", 1, "Completed", "ok", "run-1")
    found = await attempts.settle(kv, "run-1", 1)
    assert found == mine
    assert (found.kind, found.state_name, found.result_ref) == ("outcome", "Completed", "run-1")


async def test_a_late_outcome_of_a_superseded_attempt_is_refused(bus: Bus) -> None:
    kv = await bus.kv(bus.layout.attempts)
    marker = await attempts.settle(kv, "run-2", 1)
    late = await attempts.record_outcome(kv, "run-2", 1, "Completed", "too late", None)
    assert marker.kind == late.kind == "superseded"
    fresh = await attempts.record_outcome(kv, "run-2", 2, "Failed", "boom", None)
    assert (fresh.kind, fresh.attempt) == ("outcome", 2)  # a newer attempt has its own key
