"""emit_event, the trigger classes, and Flow.deploy."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from events.bus import Bus
from events.deployments import get_deployment
from events.errors import EventTooLarge, InvalidEvent
from events.settings import NatsSettings
from events.triggers import parse_deployment_trigger
from flowbus import _sink
from flowbus._nats_sink import nats_event_sink
from flowbus.entrypoints import EntrypointError
from flowbus.events import DeploymentCompoundTrigger, DeploymentEventTrigger, emit_event

from .conftest import FLOWS, write


@pytest.fixture
def local_only() -> Iterator[None]:
    previous = _sink.set_event_sink(None)
    yield
    _sink.set_event_sink(previous)


async def test_emit_event_publishes_through_the_sdk_connection(bus: Bus) -> None:
    sink = nats_event_sink(bus.settings)
    assert sink is not None
    previous = _sink.set_event_sink(sink)
    try:
        sent = emit_event("com.example.order.shipped",
                          resource={"flowbus.resource.id": "order/42", "region": "eu"},
                          payload={"carrier": "dhl"}, related=[{"role": "customer", "id": "c-1"}],
                          id="e-1", occurred=datetime(2026, 1, 1, tzinfo=UTC))
        sink.flush()
    finally:
        _sink.set_event_sink(previous)
        sink.close()
    consumer = await bus.consumer("check")
    [delivery] = await consumer.fetch(5, max_wait=1)
    got = delivery.event
    assert got == sent
    assert (got.type, got.subject, got.id, got.source) == ("com.example.order.shipped", "order/42",
                                                           "e-1", "flowbus/sdk")
    assert got.data == {"carrier": "dhl", "resource": {"region": "eu"},
                        "related": [{"role": "customer", "id": "c-1"}]}
    assert got.time == datetime(2026, 1, 1, tzinfo=UTC)


def test_emit_event_without_a_server_returns_the_event(local_only: None) -> None:
    event = emit_event("com.example.hello", resource={"prefect.resource.id": "me"},
                       payload={"name": "you"})
    assert (event.type, event.subject, event.data) == ("com.example.hello", "me", {"name": "you"})
    assert event.id and event.time is not None


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"event": "bad name!"}, InvalidEvent, "type"),
    ({"event": ""}, InvalidEvent, "type"),
    ({"resource": {"region": "eu"}}, ValueError, "has no id"),
    ({"payload": {"resource": 1}}, ValueError, "reserved"),
    ({"occurred": datetime(2026, 1, 1)}, InvalidEvent, "time zone"),
    ({"id": "x" * 5000}, InvalidEvent, "id"),
    ({"payload": {"blob": "x" * (2 * 1024 * 1024)}}, EventTooLarge, "over the limit"),
])
def test_emit_event_refuses_bad_input(local_only: None, kwargs: dict[str, Any],
                                      error: type[Exception], message: str) -> None:
    arguments: dict[str, Any] = {"event": "com.example.hello", "resource": {"flowbus.resource.id": "x"}}
    arguments.update(kwargs)
    with pytest.raises(error, match=message):
        emit_event(**arguments)


def test_trigger_classes_are_the_shared_schema() -> None:
    trigger = DeploymentEventTrigger(expect={"com.example.hello"},
                                     parameters={"name": "{{ event.data.name }}"})
    assert parse_deployment_trigger(trigger.model_dump(mode="json")) == trigger
    compound = DeploymentCompoundTrigger(triggers=[{"expect": {"a.b"}}, {"expect": {"c.d"}}],
                                         require="any")
    assert compound.required() == 1


# --- Flow.deploy -------------------------------------------------------------------------


def _load_flow(path: Path, name: str = "greet") -> Any:
    spec = importlib.util.spec_from_file_location(f"deploytest_{path.parent.name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)


@pytest.fixture
def nats_env(nats_settings: NatsSettings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWBUS_NATS_URL", ",".join(nats_settings.nats_url))
    monkeypatch.setenv("FLOWBUS_NAMESPACE", nats_settings.namespace)


async def test_flow_deploy_registers_with_a_bundle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, nats_env: None, bus: Bus
) -> None:
    root = write(tmp_path / "app", {"pipelines/flows.py": FLOWS})
    greet = _load_flow(root / "pipelines" / "flows.py")
    monkeypatch.chdir(root)
    deployment_id = greet.deploy(
        "from-code", work_pool_name="pool-a", cron="0 9 * * *", parameters={"name": "x"},
        triggers=[DeploymentEventTrigger(expect={"com.example.hello"})], tags=["t"],
        description="made by Flow.deploy",
    )
    stored = await get_deployment(bus, "from-code")
    assert stored.id == deployment_id
    assert (stored.entrypoint, stored.work_pool, stored.flow_name) == (
        "pipelines/flows.py:greet", "pool-a", "greet")
    assert stored.schedules[0]["cron"] == "0 9 * * *"
    assert stored.triggers[0]["expect"] == ["com.example.hello"]
    assert stored.code_digest is not None
    assert await (await bus.objects(bus.layout.code)).names() == [stored.code_digest]


async def test_flow_deploy_without_bundle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, nats_env: None, bus: Bus
) -> None:
    root = write(tmp_path / "app2", {"flows.py": FLOWS})
    greet = _load_flow(root / "flows.py")
    monkeypatch.chdir(root)
    greet.deploy("image-code", bundle=False)
    assert (await get_deployment(bus, "image-code")).code_digest is None
    assert (await get_deployment(bus, "image-code")).durable_tasks is True
    greet.deploy("not-durable", bundle=False, durable_tasks=False)
    assert (await get_deployment(bus, "not-durable")).durable_tasks is False


def test_flow_deploy_outside_the_current_directory_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = write(tmp_path / "app3", {"flows.py": FLOWS})
    greet = _load_flow(root / "flows.py")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    with pytest.raises(EntrypointError, match="outside the current directory"):
        greet.deploy("x")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"parameters": {"nope": 1}}, "'nope' are not in the flow's signature"),
    ({"parameters": {"times": "many"}}, "times='many'"),
    ({"cron": "not a cron"}, "field schedules"),
    ({"work_pool_name": "bad pool"}, "field work_pool"),
    ({"durable_tasks": "no"}, "field durable_tasks: must be true or false"),
])
def test_flow_deploy_refuses_bad_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         kwargs: dict[str, Any], message: str) -> None:
    root = write(tmp_path / "app4", {"flows.py": FLOWS})
    greet = _load_flow(root / "flows.py")
    monkeypatch.chdir(root)
    with pytest.raises(EntrypointError, match=message):
        greet.deploy("x", **kwargs)


def test_serve_refuses_a_durable_tasks_value_that_is_not_a_boolean(tmp_path: Path) -> None:
    from flowbus.exceptions import ConfigurationError

    greet = _load_flow(write(tmp_path / "app7", {"flows.py": FLOWS}) / "flows.py")
    assert greet.to_deployment("served", durable_tasks=False).to_record("default").durable_tasks is False
    with pytest.raises(ConfigurationError, match="durable_tasks: must be true or false"):
        greet.to_deployment("served", durable_tasks=1)


def test_flow_deploy_refuses_a_bad_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = write(tmp_path / "app5", {"flows.py": FLOWS})
    greet = _load_flow(root / "flows.py")
    monkeypatch.chdir(root)
    with pytest.raises(EntrypointError, match="field name"):
        greet.deploy("has space")


async def test_a_script_that_deploys_at_import_time_deploys_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, nats_env: None, bus: Bus
) -> None:

    root = write(tmp_path / "app6", {"script.py": FLOWS + "\nfrom datetime import timedelta\n" + 'greet.deploy("scripted", interval=timedelta(minutes=5))\n'})
    monkeypatch.chdir(root)
    _load_flow(root / "script.py")  # runs the top-level deploy, which checks script.py in a child
    stored = await get_deployment(bus, "scripted")
    assert stored.entrypoint == "script.py:greet"
    assert stored.schedules[0]["interval"] == "PT5M"
