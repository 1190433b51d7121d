"""``Automation`` through the gateway's API: a process with ``FLOWBUS_API_URL`` and no NATS URL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from events.bus import Bus
from events.errors import NotFound
from flowbus.automations import Automation
from flowbus.client.schemas.objects import StateType
from flowbus.events.actions import ChangeFlowRunState
from flowbus.events.schemas.automations import EventTrigger, Posture
from flowbus.events.schemas.events import ResourceSpecification
from gateway.service import RunningGateway, running
from gateway.settings import GatewaySettings

KEY = "automation-tests-admin-key-0123456789abcdef"


@pytest.fixture
async def api_only(bus: Bus, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[RunningGateway]:
    monkeypatch.delenv("FLOWBUS_NATS_URL", raising=False)
    async with running(bus, GatewaySettings(port=0, admin_api_key=KEY)) as gw:
        monkeypatch.setenv("FLOWBUS_API_URL", gw.url + "/api/v1")
        monkeypatch.setenv("FLOWBUS_API_KEY", KEY)
        yield gw


def crash_zombies() -> Automation:
    """The automation of Prefect's "detect zombie flows" guide, renamed to flowbus."""
    return Automation(
        name="Crash zombie flows",
        trigger=EventTrigger(
            after={"flowbus.flow-run.heartbeat"}, expect={"flowbus.flow-run.*"},
            match=ResourceSpecification({"flowbus.resource.id": ["flowbus.flow-run.*"]}),
            for_each={"flowbus.resource.id"}, posture=Posture.Proactive, threshold=1,
            within=timedelta(seconds=90),
        ),
        actions=[ChangeFlowRunState(state=StateType.CRASHED,
                                    message="Flow run marked as crashed due to missing heartbeats.")],
    )


async def test_create_read_update_pause_resume_delete_over_the_api(api_only: RunningGateway) -> None:
    made = await crash_zombies().acreate()
    assert made.id and made.enabled
    assert made.actions[0].state == "Crashed"  # type: ignore[union-attr]
    read = await Automation.aread(name="Crash zombie flows")
    assert read.id == made.id and read.trigger.posture == "Proactive"  # type: ignore[union-attr]
    read.description = "zombies"
    assert (await read.aupdate()).description == "zombies"
    assert (await read.apause()).enabled is False
    assert (await Automation.aread(id=made.id)).enabled is False
    assert (await read.aresume()).enabled is True
    await read.adelete()
    with pytest.raises(NotFound):
        await Automation.aread(id=made.id)
    with pytest.raises(NotFound, match="'no such'"):
        await Automation.aread(name="no such")


def test_a_state_type_is_taken_as_its_state_name() -> None:
    assert ChangeFlowRunState(state=StateType.CANCELLED).state == "Cancelled"
    assert ChangeFlowRunState(state="FAILED").state == "Failed"
    with pytest.raises(ValueError, match="'EXPLODED' is not a flow-run state"):
        ChangeFlowRunState(state="EXPLODED")
