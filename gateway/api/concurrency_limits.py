"""``/api/v1/concurrency-limits``: global and task-tag concurrency limits in ``flowbus-concurrency``."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from events import concurrency
from events.kv import KV
from gateway.api.paging import Page, PageQuery, page_of
from gateway.api.routing import ApiRouter, Call
from gateway.auth import Scope
from gateway.problems import Problem

router = ApiRouter()
NAME_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"


class ConcurrencyLimitCreate(BaseModel):
    """A new limit (or new values for an existing one)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN, description="letters, digits, '_' or '-'")
    limit: int = Field(ge=0, le=concurrency.MAX_LIMIT, description="slots")
    slot_decay_per_second: float | None = Field(
        default=None, gt=0, le=1000, description="makes the limit usable by rate_limit")
    tag: bool = Field(default=False, description="the name is a task tag: limit task runs with it")


class ConcurrencyLimit(BaseModel):
    """A limit and its use right now."""

    name: str = Field(description="the limit's name (task tag limits: 'task-tag-<tag>')")
    limit: int = Field(description="slots")
    slot_decay_per_second: float | None = Field(description="slot decay for rate limits")
    active_slots: int = Field(description="slots held by unexpired leases")
    waiters: int = Field(description="holders waiting for a slot")


def _view(info: concurrency.LimitInfo) -> ConcurrencyLimit:
    return ConcurrencyLimit(name=info.name, limit=info.limit,
                            slot_decay_per_second=info.slot_decay_per_second,
                            active_slots=info.active_slots, waiters=info.waiters)


async def _kv(call: Call) -> KV:
    return await call.gateway.kv(call.gateway.bus.layout.concurrency)


def _name(call: Call) -> str:
    import re

    name = call.path("name")
    if re.fullmatch(r"[A-Za-z0-9_-]{1,80}", name) is None:
        raise Problem(404, f"no concurrency limit named {name[:100]!r}")
    return name


@router.route("POST", "/concurrency-limits", scope=Scope.WRITE,
              summary="Create or change a concurrency limit", body=ConcurrencyLimitCreate,
              response=ConcurrencyLimit, status=201)
async def create_concurrency_limit(call: Call) -> ConcurrencyLimit:
    body: ConcurrencyLimitCreate = call.body
    name = concurrency.task_tag_limit(body.name) if body.tag else body.name
    kv = await _kv(call)
    await concurrency.set_limit(kv, name, body.limit, slot_decay_per_second=body.slot_decay_per_second)
    info = await concurrency.limit_info(kv, name)
    assert info is not None
    return _view(info)


@router.route("GET", "/concurrency-limits", scope=Scope.READ, summary="List concurrency limits",
              query=PageQuery, response=Page[ConcurrencyLimit])
async def list_concurrency_limits(call: Call) -> Page[ConcurrencyLimit]:
    return page_of([_view(i) for i in await concurrency.list_limits(await _kv(call))], call.query)


@router.route("GET", "/concurrency-limits/{name}", scope=Scope.READ,
              summary="A concurrency limit", response=ConcurrencyLimit, errors=(404,))
async def get_concurrency_limit(call: Call) -> ConcurrencyLimit:
    name = _name(call)
    info = await concurrency.limit_info(await _kv(call), name)
    if info is None:
        raise Problem(404, f"no concurrency limit named {name!r}")
    return _view(info)


@router.route("DELETE", "/concurrency-limits/{name}", scope=Scope.WRITE,
              summary="Delete a concurrency limit", status=204, errors=(404,))
async def delete_concurrency_limit(call: Call) -> None:
    name = _name(call)
    if not await concurrency.delete_limit(await _kv(call), name):
        raise Problem(404, f"no concurrency limit named {name!r}")
