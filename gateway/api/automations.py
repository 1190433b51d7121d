"""``/api/v1/automations``: automation definitions as JSON in ``flowbus-automations``.

Definitions are validated by the shared schema (``events.automations.AutomationSpec``):
every action's type, parameters and templates, flow control, and the loop guard.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

from pydantic import Field

from events.automation_store import target_problems
from events.automations import AutomationSpec
from events.records import Deployment
from gateway.api.paging import Page, PageQuery, page_of
from gateway.api.routing import ApiRouter, Call, check_key
from gateway.auth import Scope
from gateway.problems import Problem

router = ApiRouter()
MAX_DEFINITION_BYTES = 256 * 1024


class Automation(AutomationSpec):
    """A stored automation."""

    id: str = Field(description="the automation's id")
    created: datetime = Field(description="when it was created")
    updated: datetime = Field(description="when it last changed")


async def _check_targets(call: Call, spec: AutomationSpec) -> None:
    """422 when a run-deployment action names a missing deployment or bad parameters."""
    kv = await call.gateway.kv(call.gateway.bus.layout.deployments)
    raws = await asyncio.gather(*(kv.get_json(n) for n in await kv.keys()))
    deployments = {d.name: d for d in (Deployment.model_validate(r) for r in raws if r is not None)}
    problems = target_problems(spec, deployments)
    if problems:
        raise Problem(422, "; ".join(problems),
                      errors=[{"field": "actions", "reason": p} for p in problems])


def _encode(automation: Automation) -> bytes:
    raw = automation.model_dump_json().encode()
    if len(raw) > MAX_DEFINITION_BYTES:
        raise Problem(413, f"automation is {len(raw)} bytes encoded, over {MAX_DEFINITION_BYTES}")
    return raw


async def _load(call: Call) -> Automation:
    automation_id = check_key(call.path("automation_id"), "automation")
    kv = await call.gateway.kv(call.gateway.bus.layout.automations)
    entry = await kv.get(automation_id)
    if entry is None:
        raise Problem(404, f"no automation with id {automation_id!r}")
    return Automation.model_validate_json(entry.value)


@router.route("POST", "/automations", scope=Scope.WRITE, summary="Create an automation",
              body=AutomationSpec, response=Automation, status=201, errors=(413, 422))
async def create_automation(call: Call) -> Automation:
    body: AutomationSpec = call.body
    await _check_targets(call, body)
    now = datetime.now(UTC)
    automation = Automation(**body.model_dump(), id=str(uuid.uuid4()), created=now, updated=now)
    kv = await call.gateway.kv(call.gateway.bus.layout.automations)
    await kv.create(automation.id, _encode(automation))
    return automation


@router.route("GET", "/automations", scope=Scope.READ, summary="List automations",
              query=PageQuery, response=Page[Automation])
async def list_automations(call: Call) -> Page[Automation]:
    kv = await call.gateway.kv(call.gateway.bus.layout.automations)
    out = []
    for key in await kv.keys():
        entry = await kv.get(key)
        if entry is not None:
            out.append(Automation.model_validate_json(entry.value))
    out.sort(key=lambda a: a.created)
    return page_of(out, call.query)


@router.route("GET", "/automations/{automation_id}", scope=Scope.READ,
              summary="Get an automation", response=Automation, errors=(404,))
async def get_automation(call: Call) -> Automation:
    return await _load(call)


@router.route("PUT", "/automations/{automation_id}", scope=Scope.WRITE,
              summary="Replace an automation's definition", body=AutomationSpec,
              response=Automation, errors=(404, 413, 422))
async def replace_automation(call: Call) -> Automation:
    body: AutomationSpec = call.body
    current = await _load(call)
    await _check_targets(call, body)
    automation = Automation(**body.model_dump(), id=current.id, created=current.created,
                            updated=datetime.now(UTC))
    kv = await call.gateway.kv(call.gateway.bus.layout.automations)
    await kv.put(automation.id, _encode(automation))
    return automation


@router.route("DELETE", "/automations/{automation_id}", scope=Scope.WRITE,
              summary="Delete an automation", status=204, errors=(404,))
async def delete_automation(call: Call) -> None:
    automation = await _load(call)
    kv = await call.gateway.kv(call.gateway.bus.layout.automations)
    await kv.delete(automation.id)
