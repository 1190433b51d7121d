"""Waiting for, pausing, suspending and resuming flow runs (Prefect's `prefect.flow_runs`).

Example::

    from flowbus.flow_runs import wait_for_flow_run

    run = await wait_for_flow_run(flow_run_id, timeout=600)   # async code
    run = wait_for_flow_run(flow_run_id, timeout=600)         # sync code
    print(run.state.name)
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

from events.records import FlowRun
from flowbus._dual import dual
from flowbus._pauses import (
    apause_flow_run,
    aresume_flow_run,
    asuspend_flow_run,
    pause_flow_run,
    resume_flow_run,
    suspend_flow_run,
)
from flowbus.exceptions import FlowbusError

logger = logging.getLogger("flowbus.flow_runs")


class FlowRunWaitTimeout(FlowbusError, TimeoutError):
    """The flow run did not reach a final state in time."""


async def await_flow_run(
    flow_run_id: str | uuid.UUID,
    timeout: float | None = 10800,  # noqa: ASYNC109 (Prefect's signature; it is a wait, not a deadline)
    poll_interval: float | None = None,
    client: Any = None,
    log_states: bool = False,
) -> FlowRun:
    """`wait_for_flow_run` for async code."""
    if timeout is not None and timeout < 0:
        raise ValueError(f"timeout must be >= 0 seconds, got {timeout}")
    interval = 1.0 if poll_interval is None else poll_interval
    if interval <= 0:
        raise ValueError(f"poll_interval must be > 0 seconds, got {poll_interval}")
    if client is None:
        from flowbus.client import get_client

        async with get_client() as own:
            return await _poll(own, str(flow_run_id), timeout, interval, log_states)
    return await _poll(client, str(flow_run_id), timeout, interval, log_states)


async def _poll(client: Any, run_id: str, limit: float | None, interval: float, log_states: bool) -> FlowRun:
    deadline = None if limit is None else time.monotonic() + limit
    seen: str | None = None
    while True:
        run: FlowRun = await client.read_flow_run(run_id)
        if log_states and run.state.name != seen:
            logger.info("Flow run %r is %s", run_id, run.state.name)
        seen = run.state.name
        if run.state.is_final():
            return run
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            raise FlowRunWaitTimeout(
                f"Flow run with id {run_id} did not reach a final state within {limit:g} seconds "
                f"(it is {run.state.name})"
            )
        await asyncio.sleep(interval if remaining is None else min(interval, remaining))


@dual(await_flow_run)
def wait_for_flow_run(
    flow_run_id: str | uuid.UUID,
    timeout: float | None = 10800,
    poll_interval: float | None = None,
    client: Any = None,
    log_states: bool = False,
) -> FlowRun:
    """Wait until flow run `flow_run_id` is final and return its record.

    Polls the API every `poll_interval` seconds (default 1); raises
    `FlowRunWaitTimeout` after `timeout` seconds (None: no limit). Awaitable in
    async code, a plain call in sync code.
    """
    return asyncio.run(await_flow_run(flow_run_id, timeout, poll_interval, client, log_states))


__all__ = ["FlowRunWaitTimeout", "apause_flow_run", "aresume_flow_run", "asuspend_flow_run",
           "await_flow_run", "pause_flow_run", "resume_flow_run", "suspend_flow_run",
           "wait_for_flow_run"]
