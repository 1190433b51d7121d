"""``/api/v1/automations``: automation definitions as JSON in ``flowbus-automations``.

Definitions are validated by the shared schema (``events.automations.AutomationSpec``):
every action's type, parameters and templates, flow control, and the loop guard.

Secrets are write-only: a call-webhook ``secret`` and the values of credential headers
(``Authorization``, cookies, anything named like a token, key, secret, signature or
password) are shown when the automation is created, and as :data:`MASK` afterwards,
whatever the caller's scope; they are stored sealed with ``FLOWBUS_SECRETS_KEY``. A
replacement that sends :data:`MASK` back keeps the stored value, so a definition can be
read, edited and put back.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import Field

from events.automation_store import target_problems
from events.automations import AutomationSpec
from events.records import Deployment
from events.sealed import seal_tree, sealed_paths, walk_secrets
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


MASK = "*" * 16  # as long as the shortest secret allowed, so a masked definition is valid


def _masked(value: Any) -> Any:
    return walk_secrets(value, lambda _: MASK)


def shown(automation: Automation) -> Automation:
    """``automation`` as the API shows it after creation: secrets masked."""
    return Automation.model_validate(_masked(automation.model_dump(mode="json")))


def _kept(new: Any, old: Any) -> Any:
    """``new`` with every masked secret replaced by the stored value at the same place."""
    if isinstance(new, dict) and isinstance(old, dict):
        out: dict[str, Any] = {}
        for key, item in new.items():
            before = old.get(key)
            if item == MASK and isinstance(before, str):
                out[key] = before
            else:
                out[key] = _kept(item, before)
        return out
    if isinstance(new, list) and isinstance(old, list):
        return [_kept(item, old[i] if i < len(old) else None) for i, item in enumerate(new)]
    return new


def _plain_secrets(body: AutomationSpec) -> None:
    """422 for a secret sent already sealed: secrets are given in plain text."""
    found = sealed_paths(body.model_dump(mode="json"))
    if found:
        raise Problem(422, f"a secret is given sealed ({found[0]}); send secrets in plain text, "
                      "flowbus seals them when it stores them")


async def _check_targets(call: Call, spec: AutomationSpec) -> None:
    """422 when a run-deployment action names a missing deployment or bad parameters."""
    kv = await call.gateway.kv(call.gateway.bus.layout.deployments)
    raws = await asyncio.gather(*(kv.get_json(n) for n in await kv.keys()))
    deployments = {d.name: d for d in (Deployment.model_validate(r) for r in raws if r is not None)}
    problems = target_problems(spec, deployments)
    if problems:
        raise Problem(422, "; ".join(problems),
                      errors=[{"field": "actions", "reason": p} for p in problems])


def _encode(call: Call, automation: Automation) -> bytes:
    """The stored form: secrets sealed with the gateway's key (events.sealed)."""
    raw = json.dumps(seal_tree(automation.model_dump(mode="json"), call.gateway.secrets),
                     separators=(",", ":")).encode()
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
    _plain_secrets(body)
    await _check_targets(call, body)
    now = datetime.now(UTC)
    automation = Automation(**body.model_dump(), id=str(uuid.uuid4()), created=now, updated=now)
    kv = await call.gateway.kv(call.gateway.bus.layout.automations)
    await kv.create(automation.id, _encode(call, automation))
    return automation


@router.route("GET", "/automations", scope=Scope.READ, summary="List automations",
              query=PageQuery, response=Page[Automation])
async def list_automations(call: Call) -> Page[Automation]:
    kv = await call.gateway.kv(call.gateway.bus.layout.automations)
    out = []
    for key in await kv.keys():
        entry = await kv.get(key)
        if entry is not None:
            out.append(shown(Automation.model_validate_json(entry.value)))
    out.sort(key=lambda a: a.created)
    return page_of(out, call.query)


@router.route("GET", "/automations/{automation_id}", scope=Scope.READ,
              summary="Get an automation", response=Automation, errors=(404,))
async def get_automation(call: Call) -> Automation:
    return shown(await _load(call))


@router.route("PUT", "/automations/{automation_id}", scope=Scope.WRITE,
              summary="Replace an automation's definition", body=AutomationSpec,
              response=Automation, errors=(404, 413, 422))
async def replace_automation(call: Call) -> Automation:
    body: AutomationSpec = call.body
    _plain_secrets(body)
    current = await _load(call)
    await _check_targets(call, body)
    spec = _kept(body.model_dump(mode="json"), current.model_dump(mode="json"))
    automation = Automation.model_validate(
        {**spec, "id": current.id, "created": current.created, "updated": datetime.now(UTC)})
    kv = await call.gateway.kv(call.gateway.bus.layout.automations)
    await kv.put(automation.id, _encode(call, automation))
    return shown(automation)


@router.route("DELETE", "/automations/{automation_id}", scope=Scope.WRITE,
              summary="Delete an automation", status=204, errors=(404,))
async def delete_automation(call: Call) -> None:
    automation = await _load(call)
    kv = await call.gateway.kv(call.gateway.bus.layout.automations)
    await kv.delete(automation.id)
