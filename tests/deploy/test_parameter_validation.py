"""Run parameters are checked at the door: the API, the CLI, triggers, automations, and
the orchestrator for what templates render (docs/deploying.md, "Parameters")."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from events.automation_store import create_automation
from events.automations import InvalidAutomation
from events.bus import Bus
from events.cloudevent import CloudEvent
from events.deployments import get_deployment, request_run
from events.parameters import check_parameters
from flowbus.entrypoints import parameter_schema
from gateway.service import RunningGateway, running
from gateway.settings import GatewaySettings
from tests.orchestrator.support import flow_runs, start, wait_until

from .conftest import Cli, write


async def run_requests(bus: Bus) -> int:
    """How many run-requested events the stream holds (read, not consumed)."""
    subject = f"{bus.layout.events_prefix}.flowbus.deployment.run-requested"
    counts = await bus._js.stream_info(bus.layout.events_stream, subjects_filter=subject)
    return sum((counts.state.subjects or {}).values())


def greet(name: str, times: int = 1, loud: bool = False) -> str:
    return name * times


SCHEMA = parameter_schema(greet)


@pytest.mark.parametrize(("parameters", "expected"), [
    ({"name": "x"}, []),
    ({"name": "x", "times": "3", "loud": "yes"}, []),  # coerced as the flow will
    ({"nam": "x"}, ["'nam' is not a parameter (did you mean 'name'?)",
                    "'name' is required and has no default"]),
    ({"name": "x", "times": "three"}, ["'times' = 'three': expected a whole number"]),
    ({"name": 3, "loud": "maybe"}, ["'name' = 3: expected a string",
                                    "'loud' = 'maybe': expected true or false"]),
    ({"name": "x", "zzz": 1}, ["'zzz' is not a parameter (the flow takes 'name', 'times', 'loud')"]),
])
def test_problems_name_each_parameter(parameters: dict[str, object], expected: list[str]) -> None:
    assert [str(p) for p in check_parameters(SCHEMA, parameters)] == expected


def test_an_empty_schema_accepts_anything() -> None:
    assert check_parameters({}, {"anything": object()}) == []


def test_templates_are_left_for_render_time() -> None:
    assert check_parameters(SCHEMA, {"name": "{{ event.data.name }}", "times": "{{ 2 }}"},
                            templates=True) == []
    assert [str(p) for p in check_parameters(SCHEMA, {"times": "{{ 2 }}"}, templates=True)] == [
        "'name' is required and has no default"]


async def _deploy(flowbus_cli: Cli, project: Path) -> None:
    result = await flowbus_cli("deploy", "-f", str(project / "flowbus.yaml"))
    assert result.exit_code == 0, result.output


async def test_cli_run_refuses_bad_parameters_and_requests_nothing(
    flowbus_cli: Cli, project: Path, bus: Bus
) -> None:
    await _deploy(flowbus_cli, project)
    before = await run_requests(bus)
    result = await flowbus_cli("deployment", "run", "hello", "-p", "nam=x", "-p", "times=three")
    assert result.exit_code == 2
    assert "'nam' is not a parameter (did you mean 'name'?)" in result.output
    assert "'times' = 'three': expected a whole number" in result.output
    assert await run_requests(bus) == before
    good = await flowbus_cli("deployment", "run", "greet/hello", "-p", "times=2")
    assert good.exit_code == 0, good.output
    assert await run_requests(bus) == before + 1
    wrong_flow = await flowbus_cli("deployment", "run", "other/hello")
    assert wrong_flow.exit_code == 1 and "runs flow 'greet', not 'other'" in wrong_flow.output
    typo = await flowbus_cli("deployment", "run", "helo")
    assert typo.exit_code == 1 and "did you mean 'hello'?" in typo.output


async def test_deploy_refuses_trigger_parameters_that_never_fit(
    flowbus_cli: Cli, tmp_path: Path, bus: Bus
) -> None:
    from .conftest import FLOWS

    project = write(tmp_path / "bad", {"flows.py": FLOWS, "flowbus.yaml": """
        deployments:
          - name: hello
            entrypoint: flows.py:greet
            triggers:
              - name: on-hello
                expect: ["com.example.hello"]
                parameters: {nme: "{{ event.data.name }}", times: many}
        """})
    result = await flowbus_cli("deploy", "-f", str(project / "flowbus.yaml"))
    assert result.exit_code == 1
    assert "trigger on-hello: parameter 'nme' is not a parameter (did you mean 'name'?)" in result.output
    assert "'times' = 'many': expected a whole number" in result.output
    kv = await bus.kv(bus.layout.deployments)
    assert await kv.get("hello") is None  # nothing stored


@pytest.fixture
async def api(bus: Bus) -> AsyncIterator[RunningGateway]:
    async with running(bus, GatewaySettings(port=0, auth=False)) as gw:
        yield gw


async def test_api_answers_422_naming_each_parameter_and_creates_nothing(
    flowbus_cli: Cli, project: Path, bus: Bus, api: RunningGateway
) -> None:
    await _deploy(flowbus_cli, project)
    before = await run_requests(bus)
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{api.url}/api/v1/deployments/hello/runs",
                             json={"parameters": {"nam": "x", "times": [1]}}) as r:
            body = await r.json(content_type=None)
            assert r.status == 422, body
        fields = [e["field"] for e in body["errors"]]
        assert fields == ["parameters.nam", "parameters.times"]
        assert "did you mean 'name'?" in body["detail"] and "Traceback" not in body["detail"]
        assert await run_requests(bus) == before
        # A deployment whose trigger could never bind is refused at creation too.
        async with http.post(f"{api.url}/api/v1/deployments", json={
                "name": "other", "flow_name": "greet", "parameter_schema": SCHEMA,
                "triggers": [{"expect": ["a.b"], "parameters": {"times": 2}}]}) as r:
            body = await r.json(content_type=None)
            assert r.status == 422 and "'name' is required" in body["detail"], body
        async with http.post(f"{api.url}/api/v1/deployments/hello/runs",
                             json={"parameters": {"times": 2}}) as r:
            assert r.status == 202, await r.text()
        automation = {"name": "a", "trigger": {"expect": ["x.y"]}, "actions": [
            {"type": "run-deployment", "deployment": "helo"}]}
        async with http.post(f"{api.url}/api/v1/automations", json=automation) as r:
            body = await r.json(content_type=None)
            assert r.status == 422 and "did you mean 'hello'?" in body["detail"], body
        automation["actions"][0]["deployment"] = "hello"
        async with http.post(f"{api.url}/api/v1/automations", json=automation) as r:
            assert r.status == 201, await r.text()
    assert await run_requests(bus) == before + 1


@pytest.mark.timeout(240)  # deploys, then an orchestrator; a loaded machine is slow at both
async def test_orchestrator_stores_a_run_with_bad_parameters_failed(
    flowbus_cli: Cli, project: Path, bus: Bus
) -> None:
    """What bypasses the door (an SDK on NATS, a rendered template) fails with a message."""
    await _deploy(flowbus_cli, project)
    orch = await start(bus)
    try:
        async def consuming() -> bool:  # a loaded machine may take longer than start() waits
            return orch.orch.consuming.is_set()

        await wait_until(consuming, within=60)
        run_id = await request_run(bus, "hello", {"times": "lots"}, source="test")

        async def failed() -> bool:
            return any(r.id == run_id and r.state.name == "Failed" for r in await flow_runs(bus))

        await wait_until(failed, within=60)
        [run] = [r for r in await flow_runs(bus) if r.id == run_id]
        assert run.state.message == ("parameters of deployment 'hello': 'times' = 'lots': "
                                     "expected a whole number; the run was not started")
        # The deployment's trigger renders name from the event: a list is no string.
        await bus.publish(CloudEvent.create("com.example.hello", source="/t",
                                            data={"name": ["a", "b"]}))

        async def trigger_failed() -> bool:
            return any(r.id != run_id and r.state.name == "Failed"
                       and "'name' = ['a', 'b']: expected a string" in (r.state.message or "")
                       for r in await flow_runs(bus))

        await wait_until(trigger_failed, within=60)
    finally:
        await orch.close()


async def test_automations_must_name_existing_deployments_and_fitting_parameters(
    flowbus_cli: Cli, project: Path, bus: Bus
) -> None:
    await _deploy(flowbus_cli, project)
    assert (await get_deployment(bus, "hello")).parameter_schema["properties"]
    base = {"name": "a", "trigger": {"expect": ["x.y"]}}
    with pytest.raises(InvalidAutomation, match=r"deployment 'helo' does not exist; did you mean 'hello'\?"):
        await create_automation(bus, {**base, "actions": [
            {"type": "run-deployment", "deployment": "helo"}]})
    with pytest.raises(InvalidAutomation, match=r"parameter 'times' = 'x': expected a whole number"):
        await create_automation(bus, {**base, "actions": [
            {"type": "run-deployment", "deployment": "hello", "parameters": {"times": "x"}}]})
    made = await create_automation(bus, {**base, "actions": [
        {"type": "run-deployment", "deployment": "hello",
         "parameters": {"times": "{{ event.data.n }}"}}]})
    assert made.enabled
