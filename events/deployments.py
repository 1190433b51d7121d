"""Deployments and run requests: the operations every part performs the same way.

The gateway's REST API, the command line, ``flow.serve()`` and the SDK's client
all register deployments, ask for runs and wait for them through these functions,
so a deployment is stored, announced and run in exactly one way.

>>> async def deploy_and_run(bus: Bus) -> str:
...     await save_deployment(bus, Deployment(name="etl", flow_name="etl"))
...     return await request_run(bus, "etl", {"day": "2024-05-01"}, source="flowbus/docs")
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from events.bus import Bus
from events.cloudevent import CloudEvent
from events.errors import NotFound
from events.records import Deployment, FlowRun, utcnow
from events.runs import RunRequested, run_requested_event, state_change_event


def _deployment_event(action: str, deployment: Deployment, source: str) -> CloudEvent:
    return CloudEvent.create(
        f"flowbus.deployment.{action}",
        source=source,
        subject=f"flowbus.deployment.{deployment.name}",
        data=deployment.model_dump(mode="json"),
    )


async def get_deployment(bus: Bus, name: str) -> Deployment:
    """The deployment called ``name``; :class:`NotFound` naming it when there is none."""
    kv = await bus.kv(bus.layout.deployments)
    # "Not found" is only believed from the stream leader: a replica may lag (events.kv).
    entry = await kv.get(name) or await kv.get(name, latest=True)
    if entry is None:
        raise NotFound(f"deployment {name!r} not found")
    return Deployment.model_validate_json(entry.value)


async def list_deployments(bus: Bus) -> list[Deployment]:
    kv = await bus.kv(bus.layout.deployments)
    out = []
    for key in await kv.keys():
        entry = await kv.get(key)
        if entry is not None:
            out.append(Deployment.model_validate_json(entry.value))
    return out


async def save_deployment(
    bus: Bus, deployment: Deployment, *, source: str = "flowbus"
) -> tuple[Deployment, bool]:
    """Create or update a deployment by name; announce it. Returns (stored, created).

    An update keeps the deployment's id, creation time and paused flag, so
    re-deploying never resets what an operator did.
    """
    kv = await bus.kv(bus.layout.deployments)
    created = False

    def merge(raw: bytes | None) -> bytes:
        nonlocal created
        new = deployment
        if raw is None:
            created = True
        else:
            created = False
            old = Deployment.model_validate_json(raw)
            new = deployment.model_copy(
                update={"id": old.id, "created": old.created, "paused": old.paused,
                        "updated": utcnow()}
            )
        return new.model_dump_json().encode()

    entry = await kv.update(deployment.name, merge)
    assert entry is not None
    stored = Deployment.model_validate_json(entry.value)
    await bus.publish(_deployment_event("created" if created else "updated", stored, source))
    return stored, created


async def set_paused(bus: Bus, name: str, paused: bool, *, source: str = "flowbus") -> Deployment:
    """Pause or resume a deployment (a paused one creates no runs); announce it."""
    kv = await bus.kv(bus.layout.deployments)

    def flip(raw: bytes | None) -> bytes:
        if raw is None:
            raise NotFound(f"deployment {name!r} not found")
        current = Deployment.model_validate_json(raw)
        return current.model_copy(update={"paused": paused, "updated": utcnow()}).model_dump_json().encode()

    entry = await kv.update(name, flip)
    assert entry is not None
    stored = Deployment.model_validate_json(entry.value)
    await bus.publish(_deployment_event("paused" if paused else "resumed", stored, source))
    return stored


async def delete_deployment(bus: Bus, name: str, *, source: str = "flowbus") -> None:
    deployment = await get_deployment(bus, name)
    kv = await bus.kv(bus.layout.deployments)
    await kv.delete(name)
    await bus.publish(_deployment_event("deleted", deployment, source))


def run_request_event(
    deployment: str,
    parameters: Mapping[str, Any] | None = None,
    *,
    source: str,
    tags: Sequence[str] = (),
    name: str | None = None,
    scheduled_start_time: datetime | None = None,
    idempotency_key: str | None = None,
) -> CloudEvent:
    """The event asking for a run of ``deployment`` (docs/contract.md), with its run id."""
    request = RunRequested(
        deployment=deployment, parameters=dict(parameters or {}), tags=list(tags), name=name,
        scheduled_start_time=scheduled_start_time,
    )
    return run_requested_event(request, source=source,
                               event_id=idempotency_key or str(uuid.uuid4()))


async def request_run(
    bus: Bus,
    deployment: str,
    parameters: Mapping[str, Any] | None = None,
    *,
    source: str,
    tags: Sequence[str] = (),
    name: str | None = None,
    scheduled_start_time: datetime | None = None,
    idempotency_key: str | None = None,
) -> str:
    """Ask the orchestrator for a run; returns the flow-run id at once.

    The same ``idempotency_key`` from the same ``source`` always maps to the same
    run, so a retried request never starts a second one.
    """
    event = run_request_event(
        deployment, parameters, source=source, tags=tags, name=name,
        scheduled_start_time=scheduled_start_time, idempotency_key=idempotency_key,
    )
    await bus.publish(event)
    return str(event.data["flow_run_id"])


async def get_flow_run(bus: Bus, flow_run_id: str) -> FlowRun | None:
    kv = await bus.kv(bus.layout.flow_runs)
    entry = await kv.get(flow_run_id)
    return None if entry is None else FlowRun.model_validate_json(entry.value)


async def wait_flow_run(bus: Bus, flow_run_id: str, max_wait: float) -> FlowRun | None:
    """Wait until the run reaches a final state; the record then, or the latest one on timeout.

    Watches the record's KV key, so it returns as soon as the final state is written.
    """
    kv = await bus.kv(bus.layout.flow_runs)
    latest: FlowRun | None = None
    try:
        async with asyncio.timeout(max_wait):
            async for change in kv.watch(flow_run_id, include_history=True):
                if change.value is None:
                    continue
                latest = FlowRun.model_validate_json(change.value)
                if latest.state.is_final():
                    return latest
    except TimeoutError:
        pass
    return latest if latest is not None else await get_flow_run(bus, flow_run_id)


async def read_result(bus: Bus, flow_run: FlowRun) -> Any:
    """The persisted result of a finished run (docs/contract.md, Results); NotFound if none."""
    store = await bus.objects(bus.layout.results)
    raw = await store.get(flow_run.result_ref or flow_run.id)
    document = json.loads(raw)
    if document.get("serializer") == "json":
        return document.get("value")
    raise NotFound(
        f"the result of flow run {flow_run.id} was stored with serializer "
        f"{document.get('serializer')!r}; read it with the flowbus SDK"
    )


async def request_cancel(bus: Bus, flow_run_id: str, *, source: str = "flowbus") -> FlowRun:
    """Cancel a run (:meth:`FlowRun.cancel`): Cancelling while its runner stops it, or
    Cancelled at once when no runner holds it. The command line and the automations'
    cancel use this; the API's goes through the orchestrator (:mod:`events.control`),
    which uses the same rule."""
    kv = await bus.kv(bus.layout.flow_runs)
    result: FlowRun | None = None

    def cancel(raw: bytes | None) -> bytes:
        nonlocal result
        if raw is None:
            raise NotFound(f"flow run {flow_run_id!r} not found")
        result = FlowRun.model_validate_json(raw).cancel("cancelled on request")
        return result.model_dump_json().encode()

    await kv.update(flow_run_id, cancel)
    assert result is not None
    await bus.publish(state_change_event(result, source=source))
    return result
