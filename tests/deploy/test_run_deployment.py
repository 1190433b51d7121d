"""run_deployment and the API client, against a real gateway on loopback and real NATS.

Runs come from the product: the orchestrator creates them on request, a runner in
this process executes the deployed flow (tests.live_runs), so a run fails because
its flow raised and stays Running while its flow has not returned.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from events.bus import Bus
from events.deployments import save_deployment
from events.errors import NotFound
from events.records import Deployment, FlowRun
from events.settings import NatsSettings
from flowbus.client import ApiError, ApiNotFound, FlowbusClient, get_client
from flowbus.deployments import arun_deployment, run_deployment
from gateway.service import RunningGateway, running
from gateway.settings import GatewaySettings
from tests.live_runs import deploy_flows, greet, hold, let_go, live, wait_running
from tests.orchestrator.support import wait_until
from tests.stored import stored_events

KEY = "deploy-tests-admin-key-0123456789abcdef"


@pytest.fixture
async def api(bus: Bus, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[RunningGateway]:
    """A gateway over the test's namespace; the SDK pointed at it with a key."""
    async with running(bus, GatewaySettings(port=0, admin_api_key=KEY, wait_max_seconds=1)) as gw:
        monkeypatch.setenv("FLOWBUS_API_URL", gw.url + "/api/v1")
        monkeypatch.setenv("FLOWBUS_API_KEY", KEY)
        yield gw


@pytest.fixture
def over_nats(nats_settings: NatsSettings, monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK pointed at NATS only (as inside a runner)."""
    monkeypatch.delenv("FLOWBUS_API_URL", raising=False)
    monkeypatch.setenv("FLOWBUS_NATS_URL", ",".join(nats_settings.nats_url))
    monkeypatch.setenv("FLOWBUS_NAMESPACE", nats_settings.namespace)


@pytest.fixture
def release(tmp_path: Path) -> Path:
    """The file that lets the ``held`` deployment's flow return."""
    return tmp_path / "release"


@pytest.fixture
async def served(bus: Bus, nats_settings: NatsSettings, tmp_path: Path,
                 release: Path) -> AsyncIterator[None]:  # fmt: skip
    """``hello`` (greet) and ``held`` (hold) deployed; an orchestrator and a runner serving."""
    await deploy_flows(bus, tmp_path / "project", greet("hello"), hold(release, "held"))
    async with live(bus, nats_settings):
        try:
            yield
        finally:
            await let_go(release)  # a held flow still running returns before the runner drains


async def _deploy(bus: Bus, name: str = "hello") -> Deployment:
    stored, _ = await save_deployment(bus, Deployment(name=name, flow_name="greet"))
    return stored


async def run_requests(bus: Bus) -> list[dict[str, object]]:
    """The run requests stored so far (what the SDK published)."""
    return [dict(e.data) for e in await stored_events(bus, "flowbus.deployment.run-requested")]


# --- run_deployment over the API ---------------------------------------------------------


async def test_run_deployment_over_the_api_waits_for_the_final_state(
    api: RunningGateway, bus: Bus, served: None
) -> None:
    run = await run_deployment("hello", {"name": "you"}, timeout=60, tags=["t"])
    assert isinstance(run, FlowRun) and run.state.name == "Completed"
    assert run.parameters == {"name": "you"} and "t" in run.tags
    [request] = await run_requests(bus)
    assert request["flow_run_id"] == run.id and request["parameters"] == {"name": "you"}
    assert request["tags"] == ["t"]


async def test_run_deployment_polls_past_the_gateways_wait_cap(
    api: RunningGateway, bus: Bus, served: None, release: Path
) -> None:
    async def release_later() -> None:
        await asyncio.sleep(1.5)  # past the gateway's 1 s cap on ?wait
        await let_go(release)

    helper = asyncio.create_task(release_later())
    run = await arun_deployment("hold/held", timeout=60)
    await helper
    assert run.state.name == "Completed"


async def test_run_deployment_with_timeout_zero_returns_at_once(api: RunningGateway, bus: Bus) -> None:
    await _deploy(bus)
    run = await run_deployment("hello", timeout=0)
    assert run.state.name == "Scheduled" and run.deployment_name == "hello"
    assert run.flow_name == "greet"
    assert [r["flow_run_id"] for r in await run_requests(bus)] == [run.id]


async def test_run_deployment_returns_the_latest_state_on_timeout(
    api: RunningGateway, bus: Bus, served: None
) -> None:
    first = await run_deployment("held", timeout=0, idempotency_key="k")
    await wait_running(bus, first.id)
    run = await run_deployment("held", timeout=0.8, idempotency_key="k")  # the same run
    assert (run.id, run.state.name) == (first.id, "Running")


async def test_run_deployment_of_an_unknown_deployment_over_the_api(api: RunningGateway) -> None:
    with pytest.raises(ApiNotFound, match="no deployment named 'nope'"):
        await run_deployment("nope", timeout=0)


async def test_run_deployment_blocks_in_sync_code(api: RunningGateway, served: None) -> None:
    run = await asyncio.to_thread(run_deployment, "hello", timeout=60)
    assert isinstance(run, FlowRun) and run.state.name == "Completed"


async def test_negative_timeout_is_refused(api: RunningGateway) -> None:
    with pytest.raises(ValueError, match="timeout must be >= 0"):
        await run_deployment("hello", timeout=-1)


# --- run_deployment over NATS ------------------------------------------------------------


async def test_run_deployment_over_nats(over_nats: None, bus: Bus, served: None) -> None:
    run = await run_deployment("hello", {"times": -1}, timeout=60)
    assert run.state.name == "Failed" and "cannot greet -1 times" in (run.state.message or "")
    [request] = await run_requests(bus)
    assert run.id == request["flow_run_id"] and request["parameters"] == {"times": -1}


async def test_run_deployment_over_nats_with_a_key_maps_to_one_run(over_nats: None, bus: Bus) -> None:
    await _deploy(bus)
    first = await run_deployment("hello", timeout=0, idempotency_key="once")
    second = await run_deployment("hello", timeout=0, idempotency_key="once")
    assert first.id == second.id and first.state.name == "Scheduled"


async def test_run_deployment_over_nats_of_an_unknown_deployment(over_nats: None, bus: Bus) -> None:
    with pytest.raises(NotFound, match="deployment 'nope' not found"):
        await run_deployment("nope", timeout=0)


# --- the client --------------------------------------------------------------------------


async def test_client_manages_deployments(api: RunningGateway, bus: Bus) -> None:
    await _deploy(bus, "a")
    async with get_client() as client:
        made = await client.create_deployment(Deployment(name="b", flow_name="f", tags=["x"]))
        assert made.name == "b"
        assert [d.name for d in await client.read_deployments()] == ["a", "b"]
        assert (await client.pause_deployment("a")).paused
        assert not (await client.resume_deployment("a")).paused
        assert (await client.update_deployment("a", description="new")).description == "new"
        assert (await client.read_deployment_by_name("a")).description == "new"
        await client.delete_deployment("b")
        with pytest.raises(ApiNotFound, match="no deployment named 'b'") as caught:
            await client.read_deployment("b")
        assert caught.value.status == 404


async def test_client_path_values_cannot_escape_their_segment(api: RunningGateway, bus: Bus) -> None:
    await _deploy(bus, "a")
    async with get_client() as client:
        for hostile in ("../flow-runs", "a/pause", "a?x=1", "%2e%2e"):
            with pytest.raises(ApiNotFound):
                await client.read_deployment(hostile)


async def test_client_flow_runs_and_logs(api: RunningGateway, bus: Bus, served: None) -> None:
    async with get_client() as client:
        run_id = str((await client.create_flow_run_from_deployment("held"))["flow_run_id"])
        await wait_running(bus, run_id)

        async def logged() -> bool:
            return "holding" in [r["message"] for r in await client.read_logs(run_id)]

        await wait_until(logged, within=30)  # the flow's own log line, sent by its runner
        assert [r.id for r in await client.read_flow_runs(deployment="held")] == [run_id]
        assert await client.read_flow_runs(state="Completed") == []
        assert (await client.cancel_flow_run(run_id)).state.name == "Cancelling"
        # Its runner stops the flow and records Cancelled: the log stream then ends.
        followed = [r["message"] async for r in client.follow_logs(run_id)]
        assert "holding" in followed
        assert (await client.read_flow_run(run_id)).state.name == "Cancelled"
        with pytest.raises(ApiError, match="unknown state") as caught:
            await client.read_flow_runs(state="Sleeping")
        assert caught.value.status == 400


async def test_client_variables_and_automations(api: RunningGateway) -> None:
    # Runs another deployment than the one it watches: the loop guard refuses an automation
    # that would trigger itself.
    automation = {"name": "retry", "trigger": {"type": "event", "expect": ["flowbus.flow-run.Failed"],
                                               "match": {"data.deployment_name": "etl"}},
                  "actions": [{"type": "run-deployment", "deployment": "etl-cleanup"}]}
    async with get_client() as client:
        await client.create_deployment(Deployment(name="etl-cleanup", flow_name="cleanup"))
        await client.create_variable("region", "eu", tags=["x"])
        variable = await client.read_variable_by_name("region")
        assert variable is not None and variable["value"] == "eu"
        assert (await client.update_variable("region", "us"))["value"] == "us"
        assert [v["name"] for v in await client.read_variables()] == ["region"]
        await client.delete_variable_by_name("region")
        assert await client.read_variable_by_name("region") is None
        made = await client.create_automation(automation)
        assert (await client.read_automation(made["id"]))["name"] == "retry"
        assert [a["id"] for a in await client.read_automations()] == [made["id"]]
        await client.update_automation(made["id"], {**automation, "name": "again"})
        await client.delete_automation(made["id"])
        assert await client.read_automations() == []


async def test_client_without_a_key_is_refused(api: RunningGateway) -> None:
    async with FlowbusClient(api_key="") as client:
        with pytest.raises(ApiError) as caught:
            await client.read_deployments()
    assert caught.value.status == 401


async def test_client_names_an_unreachable_api() -> None:
    async with FlowbusClient("http://127.0.0.1:9/api/v1", timeout=2) as client:
        with pytest.raises(ApiError, match=r"cannot reach the flowbus API at http://127\.0\.0\.1:9") as caught:
            await client.read_deployments()
    assert caught.value.status == 0


async def test_client_used_outside_its_context_says_so() -> None:
    with pytest.raises(ApiError, match="not open"):
        await FlowbusClient("http://127.0.0.1:9").read_deployments()


async def test_sync_client(api: RunningGateway, bus: Bus) -> None:
    await _deploy(bus, "a")

    def use() -> tuple[list[str], bool]:
        with get_client(sync_client=True) as client:
            names = [d.name for d in client.read_deployments()]
            paused = client.pause_deployment("a").paused
            with pytest.raises(ApiNotFound):
                client.read_flow_run("absent")
        return names, paused

    assert await asyncio.to_thread(use) == (["a"], True)


async def test_run_deployment_over_nats_on_a_fresh_server_says_not_found(
    over_nats: None, nats_settings: NatsSettings
) -> None:
    try:
        with pytest.raises(NotFound, match="deployment 'hello' not found"):
            await run_deployment("hello", timeout=0)
    finally:
        async with await Bus.connect(nats_settings) as cleanup:
            await cleanup.destroy_layout()


@pytest.mark.parametrize("name", ["a b", "x*", ">", "", "a/../b c"])
async def test_run_deployment_refuses_hostile_names(over_nats: None, name: str) -> None:
    with pytest.raises(ValueError, match="is not a deployment name"):
        await run_deployment(name, timeout=0)


@pytest.fixture
async def bad_api() -> AsyncIterator[str]:
    """An HTTP server on loopback that answers like a broken or hostile API."""
    from aiohttp import web

    async def not_json(request: web.Request) -> web.Response:
        return web.Response(text="<html>proxy error</html>", content_type="text/html")

    async def wrong_shape(request: web.Request) -> web.Response:
        return web.json_response({"name": 42})

    async def huge(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        chunk = b"x" * (1024 * 1024)
        for _ in range(70):
            await response.write(chunk)
        return response

    async def html_error(request: web.Request) -> web.Response:
        return web.Response(status=502, text="bad gateway")

    async def bad_logs(request: web.Request) -> web.Response:
        return web.Response(text='{"message": "ok"}\n[1, 2]\nnot json\n')

    app = web.Application()
    app.router.add_get("/api/v1/flow-runs/r/logs", bad_logs)
    app.router.add_get("/api/v1/deployments/notjson", not_json)
    app.router.add_get("/api/v1/deployments/shape", wrong_shape)
    app.router.add_get("/api/v1/deployments/huge", huge)
    app.router.add_get("/api/v1/deployments/down", html_error)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}/api/v1"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(("name", "status", "message"), [
    ("notjson", 200, "is not JSON"),
    ("shape", 200, "unexpected Deployment"),
    ("huge", 200, "over 67108864 bytes"),
    ("down", 502, "bad gateway"),
])
async def test_client_reports_a_misbehaving_api(bad_api: str, name: str, status: int, message: str) -> None:
    async with FlowbusClient(bad_api, "k") as client:
        with pytest.raises(ApiError, match=message) as caught:
            await client.read_deployment(name)
    assert caught.value.status == status


async def test_client_reports_a_malformed_log_stream(bad_api: str) -> None:
    seen: list[dict[str, object]] = []
    async with FlowbusClient(bad_api, "k") as client:
        with pytest.raises(ApiError, match="log stream of r is malformed"):
            async for record in client.follow_logs("r"):
                seen.append(record)
    assert seen == [{"message": "ok"}]


async def test_run_deployment_passes_a_start_time_and_refuses_a_naive_one(
    over_nats: None, bus: Bus
) -> None:
    from datetime import UTC, datetime

    await _deploy(bus)
    with pytest.raises(ValueError, match="needs a time zone"):
        await run_deployment("hello", timeout=0, scheduled_time=datetime(2030, 1, 1))
    await run_deployment("hello", timeout=0, scheduled_time=datetime(2030, 1, 1, tzinfo=UTC),
                         flow_run_name="later")
    [request] = await stored_events(bus, "flowbus.deployment.run-requested")
    assert request.data["scheduled_start_time"] == "2030-01-01T00:00:00+00:00"
    assert request.data["name"] == "later" and request.source == "flowbus/sdk"
