"""``flowbus.automations.Automation``: the SDK's way to manage automations."""

from __future__ import annotations

import pytest

from events.automations import InvalidAutomation
from events.bus import Bus
from events.deployments import save_deployment
from events.errors import FlowbusError, NotFound
from events.records import Deployment
from events.settings import NatsSettings
from flowbus.automations import Automation


@pytest.fixture
def server_env(monkeypatch: pytest.MonkeyPatch, nats_settings: NatsSettings) -> None:
    monkeypatch.setenv("FLOWBUS_NATS_URL", nats_settings.nats_url[0])
    monkeypatch.setenv("FLOWBUS_NAMESPACE", nats_settings.namespace)


def chain() -> Automation:
    return Automation(
        name="load after extract",
        trigger={"expect": ["flowbus.flow-run.Completed"], "match": {"data.deployment_name": "extract"}},
        actions=[{"type": "run-deployment", "deployment": "load", "parameters": {"rows": "{{ result }}"}}],
    )


@pytest.fixture
async def load_deployed(bus: Bus) -> None:
    """The deployment the chain runs (an automation may only name an existing one)."""
    await save_deployment(bus, Deployment(name="load", flow_name="load"))


async def test_create_read_update_pause_resume_delete(server_env: None, bus: Bus,
                                                      load_deployed: None) -> None:
    made = await chain().acreate()
    assert made.id and made.enabled
    read = await Automation.aread(name="load after extract")
    assert read.id == made.id and read.actions[0].type == "run-deployment"
    read.description = "moves rows"
    assert (await read.aupdate()).description == "moves rows"
    assert (await read.apause()).enabled is False
    assert (await read.aresume()).enabled is True
    await read.adelete()
    with pytest.raises(NotFound):
        await Automation.aread(id=made.id)


async def test_an_automation_naming_a_missing_deployment_is_refused(server_env: None) -> None:
    with pytest.raises(InvalidAutomation, match="deployment 'load' does not exist"):
        await chain().acreate()


def test_the_sync_methods_work_outside_an_event_loop(server_env: None, load_deployed: None) -> None:
    made = chain().create()
    assert Automation.read(id=made.id).pause().enabled is False
    made.delete()


def test_a_wrong_definition_fails_before_anything_is_stored() -> None:
    with pytest.raises(ValueError, match=r"actions\.0\n.*'teleport'"):
        Automation.model_validate({"name": "x", "trigger": {}, "actions": [{"type": "teleport"}]})
    with pytest.raises(InvalidAutomation, match="would trigger this automation again"):
        from events.automations import parse_automation

        parse_automation({"name": "x", "trigger": {"expect": ["flowbus.flow-run.*"]},
                          "actions": [{"type": "run-deployment", "deployment": "load"}]})


async def test_without_a_server_the_sdk_says_what_to_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLOWBUS_NATS_URL", raising=False)
    with pytest.raises(FlowbusError, match="set FLOWBUS_NATS_URL"):
        await chain().acreate()
    with pytest.raises(FlowbusError, match="call create\\(\\) first"):
        await chain().apause()
