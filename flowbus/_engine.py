"""The engine's entry points: calling flows and tasks, submitting tasks, and running a
flow for a flow-run record (`run_flow` / `run_flow_async`, what runners call).

There is one engine: the task-run and flow-run state machines
(`flowbus._task_engine`, `flowbus._flow_engine`) are generators driven by a sync or an
async driver (`flowbus._drivers`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from flowbus._drivers import drive_async, drive_sync
from flowbus._flow_engine import flow_run_steps, new_flow_run
from flowbus._run_support import retry_delay, run_result
from flowbus._task_engine import TaskJob, new_task_run, task_run_steps
from flowbus.context import _flow_run_ctx
from flowbus.futures import FlowbusFuture


def run_flow(
    flow: Any,
    parameters: dict[str, Any] | None = None,
    *,
    flow_run_id: str | None = None,
    flow_run_name: str | None = None,
    deployment_id: str | None = None,
    deployment_name: str | None = None,
    tags: Iterable[str] = (),
    return_state: bool = True,
    wait_for: Iterable[Any] | None = None,
    record_attempt: int = 0,
) -> Any:
    """Run `flow` for one flow-run record, in this thread, and return its final `State`.

    This is the entry point for runners: the flow run's id, name and deployment come
    from the caller; state and log events go to the event sink. Works for sync and
    async flows (an async body runs on this thread's reusable event loop). With
    ``return_state=False`` it returns the result or raises the run's error instead.

    Example::

        state = run_flow(my_flow, {"x": 1}, flow_run_id=record_id, deployment_id=dep_id)
        assert state.is_completed()
    """
    parameters = flow._shape.bind((), dict(parameters or {}))
    flow_run = new_flow_run(
        flow,
        parameters,
        flow_run_id=flow_run_id,
        flow_run_name=flow_run_name,
        deployment_id=deployment_id,
        deployment_name=deployment_name,
        tags=tags,
        record_attempt=record_attempt,
    )
    state = drive_sync(flow_run_steps(flow, flow_run, wait_for))
    return state if return_state else run_result(flow_run, state)


async def run_flow_async(
    flow: Any,
    parameters: dict[str, Any] | None = None,
    *,
    flow_run_id: str | None = None,
    flow_run_name: str | None = None,
    deployment_id: str | None = None,
    deployment_name: str | None = None,
    tags: Iterable[str] = (),
    return_state: bool = True,
    wait_for: Iterable[Any] | None = None,
    record_attempt: int = 0,
) -> Any:
    """The async twin of `run_flow` (same engine).

    An async flow runs in the calling event loop; a sync flow runs in a worker thread
    so it does not block the loop.
    """
    if not flow.isasync:
        return await asyncio.to_thread(
            run_flow,
            flow,
            parameters,
            flow_run_id=flow_run_id,
            flow_run_name=flow_run_name,
            deployment_id=deployment_id,
            deployment_name=deployment_name,
            tags=tags,
            return_state=return_state,
            wait_for=wait_for,
            record_attempt=record_attempt,
        )
    parameters = flow._shape.bind((), dict(parameters or {}))
    flow_run = new_flow_run(
        flow,
        parameters,
        flow_run_id=flow_run_id,
        flow_run_name=flow_run_name,
        deployment_id=deployment_id,
        deployment_name=deployment_name,
        tags=tags,
        record_attempt=record_attempt,
    )
    state = await drive_async(flow_run_steps(flow, flow_run, wait_for))
    return state if return_state else run_result(flow_run, state)


def call_flow_sync(flow: Any, parameters: dict[str, Any], wait_for: Any, return_state: bool) -> Any:
    flow_run = new_flow_run(flow, parameters)
    state = drive_sync(flow_run_steps(flow, flow_run, wait_for))
    return state if return_state else run_result(flow_run, state)


async def call_flow_async(flow: Any, parameters: dict[str, Any], wait_for: Any, return_state: bool) -> Any:
    flow_run = new_flow_run(flow, parameters)
    state = await drive_async(flow_run_steps(flow, flow_run, wait_for))
    return state if return_state else run_result(flow_run, state)


def call_task_sync(task: Any, parameters: dict[str, Any], wait_for: Any, return_state: bool) -> Any:
    task_run = new_task_run(task, parameters)
    state = drive_sync(task_run_steps(task, task_run, parameters, wait_for))
    return state if return_state else run_result(task_run, state)


async def call_task_async(task: Any, parameters: dict[str, Any], wait_for: Any, return_state: bool) -> Any:
    task_run = new_task_run(task, parameters)
    state = await drive_async(task_run_steps(task, task_run, parameters, wait_for))
    return state if return_state else run_result(task_run, state)


_default_runner: Any = None


def submit_task(task: Any, parameters: dict[str, Any], wait_for: Any) -> FlowbusFuture[Any]:
    """Hand a task run to the current flow run's task runner (or a shared one outside flows)."""
    global _default_runner
    flow_ctx = _flow_run_ctx.get()
    if flow_ctx is not None and flow_ctx.task_runner is not None:
        runner = flow_ctx.task_runner
    else:
        if _default_runner is None:
            from flowbus.task_runners import ThreadPoolTaskRunner

            _default_runner = ThreadPoolTaskRunner()
        runner = _default_runner
    task_run = new_task_run(task, parameters)
    return runner.submit(TaskJob(task, task_run, parameters, wait_for))  # type: ignore[no-any-return]

__all__ = ["retry_delay", "run_flow", "run_flow_async"]
