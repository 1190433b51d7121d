"""Prefect's client filters and sorts (flowbus.client.schemas) over the real API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from events.bus import Bus
from events.deployments import get_flow_run
from events.settings import NatsSettings
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
from tests.live_runs import Live, deploy_flows, greet, hold, let_go, live, wait_running
from tests.orchestrator.support import wait_until
from tests.runners.runner_helpers import wait_final

KEY = "deploy-tests-admin-key-0123456789abcdef"


@pytest.fixture
async def api(bus: Bus, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[RunningGateway]:
    async with running(bus, GatewaySettings(port=0, admin_api_key=KEY, wait_max_seconds=1)) as gw:
        monkeypatch.setenv("FLOWBUS_API_URL", gw.url + "/api/v1")
        monkeypatch.setenv("FLOWBUS_API_KEY", KEY)
        yield gw


@pytest.fixture
async def served(api: RunningGateway, bus: Bus, nats_settings: NatsSettings,
                 tmp_path: Path) -> AsyncIterator[Live]:  # fmt: skip
    """The orchestrator (it answers cancel) and a runner, with ``greet`` deployed twice."""
    await deploy_flows(bus, tmp_path / "code", greet("hello", tags=["hello"]),
                       greet("nightly-etl", tags=["nightly-etl"]), hold(tmp_path / "release"))
    async with live(bus, nats_settings) as served:
        try:
            yield served
        finally:
            await let_go(tmp_path / "release")


@pytest.fixture
async def runs(served: Live, bus: Bus) -> dict[str, str]:
    """Three runs of ``hello`` (a2 fails: its flow raises) and one of ``nightly-etl``: the
    ids the orchestrator gave them, by name, created one after the other a second apart."""
    asked = {"a1": ("hello", 1), "a2": ("hello", -1), "a3": ("hello", 1), "b1": ("nightly-etl", 1)}
    ids: dict[str, str] = {}
    async with get_client() as client:
        for name, (deployment, times) in asked.items():
            made = await client.create_flow_run_from_deployment(deployment, {"times": times})
            ids[name] = run_id = str(made["flow_run_id"])

            async def created(run_id: str = run_id) -> bool:
                return await get_flow_run(bus, run_id) is not None

            await wait_until(created, within=60)
            served.clock.advance(1)  # the next run is expected a second later
    for run_id in ids.values():  # the runner runs them side by side
        await wait_final(bus, run_id, max_wait=60)
    return ids


def named(runs: dict[str, str], found: list[Any]) -> list[str]:
    """The names (a1, ...) of the runs ``found``, in their order."""
    by_id = {run_id: name for name, run_id in runs.items()}
    return [by_id[run.id] for run in found]


async def test_filters_by_state_type_and_name(runs: dict[str, str]) -> None:
    async with get_client() as client:
        done = await client.read_flow_runs(flow_run_filter=FlowRunFilter(state={"type": {"any_": ["COMPLETED"]}}))
        assert sorted(named(runs, done)) == ["a1", "a3", "b1"]
        failed = await client.read_flow_runs(flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(name=FlowRunFilterStateName(any_=["Failed"]))))
        assert named(runs, failed) == ["a2"]
        both = await client.read_flow_runs(flow_run_filter=FlowRunFilter(
            id={"any_": [runs["a1"], runs["b1"]]}, state={"type": {"not_any_": [StateType.COMPLETED]}},
            operator="or_"))
        assert sorted(named(runs, both)) == ["a1", "a2", "b1"]


async def test_filters_by_deployment_time_and_sorts(runs: dict[str, str], bus: Bus) -> None:
    async with get_client() as client:
        etl = await client.read_flow_runs(deployment_filter=DeploymentFilter(name={"like_": "ETL"}))
        assert named(runs, etl) == ["b1"]
        later = datetime.now(UTC) + timedelta(minutes=1)
        newest = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(expected_start_time={"before_": later}),
            sort=FlowRunSort.EXPECTED_START_TIME_DESC, limit=2)
        every = await client.read_flow_runs(flow_run_filter=FlowRunFilter(),
                                            sort=FlowRunSort.EXPECTED_START_TIME_ASC)
        assert named(runs, every) == ["a1", "a2", "a3", "b1"]  # the order they were created in
        assert named(runs, newest) == ["b1", "a3"]
        assert await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(expected_start_time={"after_": later})) == []
        names = [r.name for r in await client.read_flow_runs(sort="NAME_ASC", offset=1, limit=2)]
        assert names == sorted(r.name for r in every)[1:3]
        deps = await client.read_deployments(deployment_filter={"tags": {"all_": ["hello"]}})
        assert [d.name for d in deps] == ["hello"]


async def test_bad_filters_are_named(api: RunningGateway) -> None:  # refused before any request
    async with get_client() as client:
        with pytest.raises(ValueError, match="colour"):
            await client.read_flow_runs(flow_run_filter={"colour": {"any_": ["red"]}})
        with pytest.raises(TypeError, match="flow_run_filter must be a FlowRunFilter"):
            await client.read_flow_runs(flow_run_filter=["Completed"])
        with pytest.raises(ValueError, match="sort 'SIDEWAYS' is not one of"):
            await client.read_flow_runs(sort="SIDEWAYS")
        with pytest.raises(ValueError, match="limit must be >= 0"):
            await client.read_flow_runs(sort=FlowRunSort.ID_DESC, limit=-1)


async def test_set_flow_run_state_cancels_and_refuses_the_rest(served: Live, bus: Bus) -> None:
    async with get_client() as client:
        run_id = str((await client.create_flow_run_from_deployment("held"))["flow_run_id"])
        await wait_running(bus, run_id)
        current = await client.read_flow_run(run_id)
        cancelled = current.state.model_copy(update={"name": "Cancelled", "type": StateType.CANCELLED})
        assert (await client.set_flow_run_state(run_id, cancelled, force=True)).state.name == "Cancelling"
        with pytest.raises(ApiError, match="only cancels runs") as caught:
            await client.set_flow_run_state(run_id, current.state.model_copy(update={"type": StateType.COMPLETED}))
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
