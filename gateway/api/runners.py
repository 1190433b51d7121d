"""``/api/v1/runners``: the runners serving now, from the runner registry (``<ns>-runners``)."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from events.records import utcnow
from events.runner_registry import RunnerRecord, list_records
from gateway.api.paging import Page, PageQuery, page_of
from gateway.api.routing import ApiRouter, Call
from gateway.auth import Scope
from gateway.context import Gateway

router = ApiRouter()


class RunnerQuery(PageQuery):
    """Which runners to list."""

    pool: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,64}$",
                             description="only the runners of this work pool")


class Runner(RunnerRecord):
    """A runner's record as it wrote it, and whether its heartbeat is overdue."""

    stale: bool = Field(description="no heartbeat for longer than two intervals (and a "
                                    "second): presumed dead; its record expires soon")
    heartbeat_age_seconds: float = Field(description="seconds since its last heartbeat")


async def registered_runners(gateway: Gateway, pool: str | None = None,
                             now: datetime | None = None) -> list[Runner]:
    """Every registered runner (of ``pool``), with its staleness as of ``now``."""
    now = now or utcnow()
    records = await list_records(await gateway.kv(gateway.bus.layout.runners))
    return [Runner(**r.model_dump(), stale=r.is_stale(now),
                   heartbeat_age_seconds=max(0.0, (now - r.heartbeat).total_seconds()))
            for r in records if pool is None or r.pool == pool]


@router.route("GET", "/runners", scope=Scope.READ,
              summary="List the runners serving now, by pool, with their slots and heartbeat",
              query=RunnerQuery, response=Page[Runner])
async def list_runners(call: Call) -> Page[Runner]:
    query: RunnerQuery = call.query
    return page_of(await registered_runners(call.gateway, query.pool), query)
