"""``run_deployment``: ask for a run of a deployment and wait for it, as in Prefect 3.

::

    from flowbus.deployments import run_deployment

    run = run_deployment("etl", parameters={"day": "2024-05-01"}, timeout=60)
    print(run.state.name)

Called from synchronous code it blocks and returns the :class:`FlowRun`; called
inside a running event loop it returns an awaitable (``await run_deployment(...)``),
as Prefect 3's dispatch does. :func:`arun_deployment` is the async form.

The request goes to the gateway's REST API when ``FLOWBUS_API_URL`` is set, else
straight to NATS when ``FLOWBUS_NATS_URL`` is set (inside a runner, say), else to
the API at its default address. Both ways publish the same run-requested event.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import time
from collections.abc import Coroutine
from datetime import datetime
from typing import Any

from events.records import NAME_PATTERN, FlowRun, State
from flowbus.client import ApiNotFound, FlowbusClient

SOURCE = "flowbus/sdk"
_FIRST_WAIT_SECONDS = 60.0
_POLL_MAX_SECONDS = 1.0


def _deployment_name(name: str) -> str:
    # Prefect names deployments "flow-name/deployment-name"; here the deployment's
    # name alone is unique, so the flow part is accepted and ignored.
    return name.rsplit("/", 1)[-1]


def _provisional(run_id: str, deployment: str, flow_name: str, parameters: dict[str, Any],
                 tags: list[str]) -> FlowRun:
    """The run as requested, before the orchestrator created its record."""
    return FlowRun(
        id=run_id, name=run_id, flow_name=flow_name, deployment_name=deployment,
        parameters=parameters, tags=tags,
        state=State.named("Scheduled", message="requested; not created by the orchestrator yet"),
    )


async def arun_deployment(
    name: str,
    parameters: dict[str, Any] | None = None,
    *,
    timeout: float | None = None,  # noqa: ASYNC109 (Prefect's signature; it is a wait, not a deadline)
    tags: list[str] | None = None,
    idempotency_key: str | None = None,
    flow_run_name: str | None = None,
    scheduled_time: datetime | None = None,
    as_subflow: bool = True,
    poll_interval: float | None = None,
) -> FlowRun:
    """Request a run of deployment ``name``; wait up to ``timeout`` s for its final state.

    ``timeout=None`` waits for as long as it takes, ``0`` returns at once. The run
    as last seen is returned; if the orchestrator has not created it yet, a
    provisional record in state Scheduled. ``as_subflow`` and ``poll_interval`` are
    accepted for Prefect compatibility and ignored (the run is its own top-level run).
    """
    del as_subflow, poll_interval
    if timeout is not None and timeout < 0:
        raise ValueError(f"timeout must be >= 0 or None, got {timeout}")
    if scheduled_time is not None and scheduled_time.tzinfo is None:
        raise ValueError(f"scheduled_time {scheduled_time.isoformat()} needs a time zone, "
                         "e.g. datetime.now(UTC)")
    deployment = _deployment_name(name)
    if re.match(NAME_PATTERN, deployment) is None:
        raise ValueError(f"{name[:100]!r} is not a deployment name (letters, digits, '_', '.', '-')")
    params, run_tags = dict(parameters or {}), list(tags or [])
    if not os.environ.get("FLOWBUS_API_URL") and os.environ.get("FLOWBUS_NATS_URL"):
        return await _run_over_nats(deployment, params, timeout, run_tags, idempotency_key,
                                    flow_run_name, scheduled_time)
    return await _run_over_api(deployment, params, timeout, run_tags, idempotency_key,
                               flow_run_name, scheduled_time)


def run_deployment(
    name: str,
    parameters: dict[str, Any] | None = None,
    *,
    timeout: float | None = None,
    tags: list[str] | None = None,
    idempotency_key: str | None = None,
    flow_run_name: str | None = None,
    scheduled_time: datetime | None = None,
    as_subflow: bool = True,
    poll_interval: float | None = None,
) -> Any:
    """:func:`arun_deployment`, blocking in sync code, an awaitable inside an event loop."""
    call: Coroutine[Any, Any, FlowRun] = arun_deployment(
        name, parameters, timeout=timeout, tags=tags, idempotency_key=idempotency_key,
        flow_run_name=flow_run_name, scheduled_time=scheduled_time, as_subflow=as_subflow,
        poll_interval=poll_interval,
    )
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(call)
    return call


async def _run_over_nats(deployment: str, parameters: dict[str, Any], max_wait: float | None,
                         tags: list[str], idempotency_key: str | None,
                         flow_run_name: str | None, scheduled_time: datetime | None) -> FlowRun:
    from events.bus import Bus
    from events.deployments import get_deployment, get_flow_run, request_run, wait_flow_run
    from events.errors import FlowbusError
    from events.settings import NatsSettings

    settings = NatsSettings()
    # Creating the layout costs ~15 ms per call; it exists whenever any part of
    # flowbus ran, so only a missing bucket makes us create it.
    async with await Bus.connect(settings, name="flowbus-sdk", ensure=False) as bus:
        try:
            found = await get_deployment(bus, deployment)
        except FlowbusError:
            raise
        except Exception:  # the deployments bucket is missing: a fresh NATS
            await (await Bus.connect(settings, name="flowbus-sdk")).close()
            found = await get_deployment(bus, deployment)
        run_id = await request_run(
            bus, deployment, parameters, source=SOURCE, tags=tags, name=flow_run_name,
            scheduled_start_time=scheduled_time, idempotency_key=idempotency_key,
        )
        if max_wait == 0:
            run = await get_flow_run(bus, run_id)
        else:
            run = await wait_flow_run(bus, run_id, math.inf if max_wait is None else max_wait)
    return run or _provisional(run_id, deployment, found.flow_name, parameters, tags)


async def _run_over_api(deployment: str, parameters: dict[str, Any], max_wait: float | None,
                        tags: list[str], idempotency_key: str | None,
                        flow_run_name: str | None, scheduled_time: datetime | None) -> FlowRun:
    deadline = None if max_wait is None else time.monotonic() + max_wait
    first_wait = _FIRST_WAIT_SECONDS if max_wait is None else min(max_wait, _FIRST_WAIT_SECONDS)
    async with FlowbusClient() as client:
        answer = await client.create_flow_run_from_deployment(
            deployment, parameters, tags=tags, idempotency_key=idempotency_key,
            flow_run_name=flow_run_name, scheduled_start_time=scheduled_time,
            wait=first_wait or None,
        )
        run_id = str(answer["flow_run_id"])
        run = await _read_run(client, run_id)
        pause = 0.05
        # The API's wait is capped by the gateway; beyond it, poll with backoff.
        while not (run is not None and run.state.is_final()):
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                break
            await asyncio.sleep(pause if left is None else min(pause, left))
            pause = min(pause * 2, _POLL_MAX_SECONDS)
            run = await _read_run(client, run_id)
        if run is None:
            flow_name = (await client.read_deployment(deployment)).flow_name
            return _provisional(run_id, deployment, flow_name, parameters, tags)
        return run


async def _read_run(client: FlowbusClient, run_id: str) -> FlowRun | None:
    try:
        return await client.read_flow_run(run_id)
    except ApiNotFound:
        return None
