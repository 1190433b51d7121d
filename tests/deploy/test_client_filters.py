"""Prefect's client filters and sorts (flowbus.client.schemas) over the real API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from events.bus import Bus
from events.deployments import save_deployment
from events.records import Deployment, State
from flowbus.client import ApiError, get_client
from flowbus.client.schemas.filters import (
    DeploymentFilter,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateName,
)
from flowbus.client.schemas.objects import StateType
from flowbus.client.schemas.sorting import FlowRunSort
from gateway.service import RunningGateway, running
from gateway.settings import GatewaySettings
from tests.control_desk import control_desk

from .conftest import act_as_runner

KEY = "deploy-tests-admin-key-0123456789abcdef"


@pytest.fixture
async def api(bus: Bus, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[RunningGateway]:
    async with running(bus, GatewaySettings(port=0, admin_api_key=KEY, wait_max_seconds=1)) as gw, \
            control_desk(bus):  # the orchestrator's answers to cancel and resume
        monkeypatch.setenv("FLOWBUS_API_URL", gw.url + "/api/v1")
        monkeypatch.setenv("FLOWBUS_API_KEY", KEY)
        yield gw


@pytest.fixture
async def runs(api: RunningGateway, bus: Bus) -> dict[str, str]:
    """Three runs of ``hello`` (two completed, one failed) and one of ``nightly-etl``."""
    for name in ("hello", "nightly-etl"):
        await save_deployment(bus, Deployment(name=name, flow_name="greet", tags=[name]))
    finals = {"a1": ("hello", "Completed"), "a2": ("hello", "Failed"), "a3": ("hello", "Completed"),
              "b1": ("nightly-etl", "Completed")}
    for run_id, (deployment, final) in finals.items():
        await act_as_runner(bus, run_id, deployment=deployment, final=final)
    return {k: v[1] for k, v in finals.items()}


async def test_filters_by_state_type_and_name(runs: dict[str, str]) -> None:
    async with get_client() as client:
        done = await client.read_flow_runs(flow_run_filter=FlowRunFilter(state={"type": {"any_": ["COMPLETED"]}}))
        assert sorted(r.id for r in done) == ["a1", "a3", "b1"]
        failed = await client.read_flow_runs(flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(name=FlowRunFilterStateName(any_=["Failed"]))))
        assert [r.id for r in failed] == ["a2"]
        both = await client.read_flow_runs(flow_run_filter=FlowRunFilter(
            id={"any_": ["a1", "b1"]}, state={"type": {"not_any_": [StateType.COMPLETED]}}, operator="or_"))
        assert sorted(r.id for r in both) == ["a1", "a2", "b1"]


async def test_filters_by_deployment_time_and_sorts(runs: dict[str, str], bus: Bus) -> None:
    async with get_client() as client:
        etl = await client.read_flow_runs(deployment_filter=DeploymentFilter(name={"like_": "ETL"}))
        assert [r.id for r in etl] == ["b1"]
        later = datetime.now(UTC) + timedelta(minutes=1)
        newest = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(expected_start_time={"before_": later}),
            sort=FlowRunSort.EXPECTED_START_TIME_DESC, limit=2)
        every = await client.read_flow_runs(flow_run_filter=FlowRunFilter(),
                                            sort=FlowRunSort.EXPECTED_START_TIME_ASC)
        assert [r.id for r in every] == ["a1", "a2", "a3", "b1"]  # the order they were created in
        assert [r.id for r in newest] == ["b1", "a3"]
        assert await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(expected_start_time={"after_": later})) == []
        names = [r.name for r in await client.read_flow_runs(sort="NAME_ASC", offset=1, limit=2)]
        assert names == sorted(r.name for r in every)[1:3]
        deps = await client.read_deployments(deployment_filter={"tags": {"all_": ["hello"]}})
        assert [d.name for d in deps] == ["hello"]


async def test_bad_filters_are_named(runs: dict[str, str]) -> None:
    async with get_client() as client:
        with pytest.raises(ValueError, match="colour"):
            await client.read_flow_runs(flow_run_filter={"colour": {"any_": ["red"]}})
        with pytest.raises(TypeError, match="flow_run_filter must be a FlowRunFilter"):
            await client.read_flow_runs(flow_run_filter=["Completed"])
        with pytest.raises(ValueError, match="sort 'SIDEWAYS' is not one of"):
            await client.read_flow_runs(sort="SIDEWAYS")
        with pytest.raises(ValueError, match="limit must be >= 0"):
            await client.read_flow_runs(sort=FlowRunSort.ID_DESC, limit=-1)


async def test_set_flow_run_state_cancels_and_refuses_the_rest(api: RunningGateway, bus: Bus) -> None:
    kv = await bus.kv(bus.layout.flow_runs)
    from events.records import FlowRun

    run = FlowRun(id="r-9", name="r", flow_name="greet", state=State.named("Running"))
    await kv.put(run.id, run.model_dump_json().encode())
    async with get_client() as client:
        current = await client.read_flow_run("r-9")
        cancelled = current.state.model_copy(update={"name": "Cancelled", "type": StateType.CANCELLED})
        assert (await client.set_flow_run_state("r-9", cancelled, force=True)).state.name == "Cancelling"
        with pytest.raises(ApiError, match="only cancels runs") as caught:
            await client.set_flow_run_state("r-9", current.state.model_copy(update={"type": StateType.COMPLETED}))
        assert caught.value.status == 422


async def test_read_artifacts_with_filters(api: RunningGateway, monkeypatch: pytest.MonkeyPatch,
                                           nats_settings: object) -> None:  # fmt: skip
    from flowbus import _remote, flow
    from flowbus.artifacts import create_markdown_artifact

    _remote.install(nats_settings)  # type: ignore[arg-type]
    try:
        @flow
        def report(key: str) -> None:
            create_markdown_artifact("# hi", key=key)

        import asyncio

        await asyncio.to_thread(report, "daily-report")
        await asyncio.to_thread(report, "weekly-report")
        async with get_client() as client:
            every = await client.read_artifacts()
            assert sorted(a["key"] for a in every) == ["daily-report", "weekly-report"]
            daily = await client.read_artifacts(artifact_filter={"key": {"like_": "daily"}})
            assert [a["key"] for a in daily] == ["daily-report"]
            ordered = await client.read_artifacts(sort="KEY_DESC", limit=1)
            assert [a["key"] for a in ordered] == ["weekly-report"]
    finally:
        _remote.reset()


async def test_read_automations_with_prefects_automation_filter(api: RunningGateway) -> None:
    from flowbus.events.filters import (
        AutomationFilter,
        AutomationFilterCreated,
        AutomationFilterName,
        AutomationFilterTags,
    )

    def spec(name: str, tags: list[str]) -> dict[str, object]:
        return {"name": name, "tags": tags,
                "trigger": {"type": "event", "expect": ["flowbus.flow-run.Failed"]},
                "actions": [{"type": "cancel-flow-run"}]}  # fmt: skip

    async with get_client() as client:
        for name, tags in (("nightly", ["ops", "etl"]), ("hourly", ["ops"]), ("bare", [])):
            await client.create_automation(spec(name, tags))

        async def names(automations: object = None, **kw: int) -> set[str]:
            return {a["name"] for a in await client.read_automations(automations=automations, **kw)}

        assert await names() == {"nightly", "hourly", "bare"}
        assert await names(AutomationFilter(name=AutomationFilterName(any_=["hourly", "x"]))) == {"hourly"}
        assert await names(AutomationFilter(tags=AutomationFilterTags(all_=["ops", "etl"]))) == {"nightly"}
        assert await names(AutomationFilter(tags=AutomationFilterTags(any_=["ops"]))) == {"nightly", "hourly"}
        assert await names(AutomationFilter(tags=AutomationFilterTags(is_null_=True))) == {"bare"}
        later = datetime.now(UTC) + timedelta(hours=1)
        assert await names({"created": {"before_": later.isoformat()}}) == {"nightly", "hourly", "bare"}
        earlier = AutomationFilter(created=AutomationFilterCreated(before_=later - timedelta(days=1)))
        assert await names(earlier) == set()
        assert len(await client.read_automations(limit=2)) == 2
        with pytest.raises(ValueError, match="colour"):
            await client.read_automations(automations={"colour": {"any_": ["red"]}})
        with pytest.raises(TypeError, match="automations must be a AutomationFilter"):
            await client.read_automations(automations=["nightly"])
