from __future__ import annotations

from flowbus import flow, task
from flowbus._engine import run_flow, run_flow_async
from flowbus.runtime import deployment, flow_run
from flowbus.states import State


@task
def double(x: int) -> int:
    return 2 * x


@flow
def sync_flow(x: int) -> dict[str, object]:
    return {"id": flow_run.id, "name": flow_run.name, "dep": deployment.id, "tags": flow_run.tags, "v": double(x)}


@flow
async def async_flow(x: int) -> int:
    return double(x)


def test_run_flow_uses_the_given_run_record_and_returns_the_state(sink) -> None:  # type: ignore[no-untyped-def]
    state = run_flow(
        sync_flow,
        {"x": "4"},
        flow_run_id="run-123",
        flow_run_name="from-runner",
        deployment_id="dep-1",
        tags=["prod"],
    )
    assert isinstance(state, State) and state.is_completed()
    assert state.result() == {"id": "run-123", "name": "from-runner", "dep": "dep-1", "tags": ["prod"], "v": 8}
    assert sink.state_names("flow-run", "run-123") == ["Pending", "Running", "Completed"]
    assert {e["data"]["deployment_id"] for e in sink.events if "flow-run" in e["type"]} == {"dep-1"}


def test_run_flow_returns_failed_state_for_bad_parameters() -> None:
    state = run_flow(sync_flow, {"x": "nope"})
    assert state.is_failed() and "'x'" in (state.message or "")


def test_run_flow_runs_an_async_flow_from_sync_code() -> None:
    assert run_flow(async_flow, {"x": 2}, return_state=False) == 4


async def test_run_flow_async_runs_both_kinds() -> None:
    assert await (await run_flow_async(async_flow, {"x": 3})).result() == 6  # awaitable, as in Prefect
    state = await run_flow_async(sync_flow, {"x": 1}, flow_run_id="r-2")
    assert (await state.result())["id"] == "r-2"


def test_async_flow_run_from_sync_code_may_block_on_an_async_task_it_submitted() -> None:
    # The flow's loop and the task's loop must differ, or this would deadlock.
    @task
    async def inc(x: int) -> int:
        return x + 1

    @flow
    async def blocking_style(x: int) -> int:
        return inc.submit(x).result()  # a blocking wait inside async code, as users write

    assert run_flow(blocking_style, {"x": 1}, return_state=False) == 2

    @flow
    def sync_parent() -> int:
        return run_flow(blocking_style, {"x": 5}, return_state=False)  # type: ignore[no-any-return]

    assert sync_parent() == 6


def test_async_flows_run_from_one_thread_reuse_its_event_loop() -> None:
    import asyncio

    loops = []

    @flow
    async def which_loop() -> None:
        loops.append(asyncio.get_running_loop())

    run_flow(which_loop)
    run_flow(which_loop)
    assert len(loops) == 2 and loops[0] is loops[1] and not loops[0].is_closed()
