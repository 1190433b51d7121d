"""``flowbus.flow-run.<State>`` events carry the record as stored plus its deployment's name."""

from __future__ import annotations

from datetime import timedelta

from events.bus import Bus
from events.records import State
from events.runs import FlowRunStateEvent, state_change_event
from runners import claims
from tests.created_runs import T0, created_run


async def test_state_event_data_is_the_record_and_its_deployment(bus: Bus) -> None:
    run = await created_run(bus, "r-state-event", deployment="etl", tags=["b", "a"])
    _, running = claims.claimed(run, "runner-1", T0 + timedelta(seconds=1), stale_after=12.0)
    for record in (run, running, running.transition(State.named("Completed"))):
        event = state_change_event(record, source="flowbus/runner", stamped=True)
        assert event.type == f"flowbus.flow-run.{record.state.name}"
        # What the event carried before it was built from the record's own JSON: the
        # record revalidated as a FlowRunStateEvent, dumped.
        expected = FlowRunStateEvent(**dict(record), deployment=record.deployment_name)
        assert event.data == expected.model_dump(mode="json", exclude_none=False)
        assert FlowRunStateEvent.model_validate(event.data) == expected
        assert event.data["deployment"] == "etl"
        assert event.data["state"]["data"]["attempt"] == (1 if record is running else None)
