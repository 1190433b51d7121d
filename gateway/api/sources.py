"""``/api/v1/sources``: manage event sources, pause and resume them, see status and dead letters.

Definitions hold secrets only by reference (``{"env": ...}`` or ``{"file": ...}``), so
nothing here can echo a secret back. Changing sources is the admin scope: a source makes
the gateway connect where its definition says.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from events.errors import AlreadyExists, NotFound
from events.source_activity import SourceActivity, get_activity
from events.source_store import DeadLetter, SourceStore
from events.sources import Source, SourceSpec, SourceState
from gateway.api.paging import Page, PageQuery, page_of
from gateway.api.routing import ApiRouter, Call, check_key
from gateway.auth import Scope
from gateway.problems import Problem

router = ApiRouter()


class SourceView(Source):
    """A source with its last reported status and activity."""

    status: SourceState | None = Field(default=None,
                                       description="what the source is doing; null until it ran")
    activity: SourceActivity | None = Field(
        default=None, description="its traffic, lag and last error, as the gateway running it "
                                  "last wrote them; null until one ran it")


class Selection(BaseModel):
    """Which dead letters to act on: the keys given, or all when absent."""

    model_config = ConfigDict(extra="forbid")

    keys: list[str] | None = Field(default=None, max_length=10_000,
                                   description="dead-letter keys; absent: every dead letter")


class RedriveResult(BaseModel):
    """What a redrive did."""

    redriven: int = Field(description="dead letters mapped and published")
    failed: int = Field(description="dead letters whose mapping failed again (kept)")


class PurgeResult(BaseModel):
    """What a purge did."""

    purged: int = Field(description="dead letters dropped")


async def _store(call: Call) -> SourceStore:
    gateway = call.gateway
    layout = gateway.bus.layout
    return SourceStore(gateway.bus, await gateway.kv(layout.sources),
                       await gateway.kv(layout.source_dead_letters))


async def _view(store: SourceStore, source: Source) -> SourceView:
    return SourceView.model_validate({**source.model_dump(),
                                      "status": await store.status(source.name),
                                      "activity": await get_activity(store.sources, source.name)})


async def _get(call: Call, store: SourceStore) -> Source:
    name = check_key(call.path("name"), "source")
    source = await store.get(name)
    if source is None:
        raise Problem(404, f"no source named {name!r}")
    return source


@router.route("POST", "/sources", scope=Scope.ADMIN, summary="Create a source",
              body=SourceSpec, response=SourceView, status=201, errors=(409,))
async def create_source(call: Call) -> SourceView:
    store = await _store(call)
    try:
        source = await store.create(call.body)
    except AlreadyExists as exc:
        raise Problem(409, str(exc)) from None
    return await _view(store, source)


@router.route("GET", "/sources", scope=Scope.READ, summary="List sources",
              query=PageQuery, response=Page[SourceView])
async def list_sources(call: Call) -> Page[SourceView]:
    store = await _store(call)
    return page_of([await _view(store, s) for s in await store.all()], call.query)


@router.route("GET", "/sources/{name}", scope=Scope.READ, summary="Get a source and its status",
              response=SourceView, errors=(404,))
async def get_source(call: Call) -> SourceView:
    store = await _store(call)
    return await _view(store, await _get(call, store))


@router.route("PUT", "/sources/{name}", scope=Scope.ADMIN,
              summary="Replace a source's definition (the gateways restart it)",
              body=SourceSpec, response=SourceView, errors=(404,))
async def replace_source(call: Call) -> SourceView:
    store = await _store(call)
    current = await _get(call, store)
    spec: SourceSpec = call.body
    if spec.name != current.name:
        raise Problem(400, f"body field 'name': {spec.name!r} differs from the path's "
                           f"{current.name!r}; a source cannot be renamed")
    return await _view(store, await store.replace(spec))


@router.route("DELETE", "/sources/{name}", scope=Scope.ADMIN,
              summary="Delete a source, its status and its dead letters", status=204,
              errors=(404,))
async def delete_source(call: Call) -> None:
    store = await _store(call)
    source = await _get(call, store)
    try:
        await store.delete(source.name)
    except NotFound as exc:
        raise Problem(404, str(exc)) from None


async def _set_paused(call: Call, paused: bool) -> SourceView:
    store = await _store(call)
    source = await _get(call, store)
    try:
        return await _view(store, await store.set_paused(source.name, paused))
    except NotFound as exc:
        raise Problem(404, str(exc)) from None


@router.route("POST", "/sources/{name}/pause", scope=Scope.WRITE,
              summary="Pause a source: it stops consuming, the broker keeps what arrives",
              response=SourceView, errors=(404,))
async def pause_source(call: Call) -> SourceView:
    return await _set_paused(call, True)


@router.route("POST", "/sources/{name}/resume", scope=Scope.WRITE,
              summary="Resume a paused source where it was", response=SourceView, errors=(404,))
async def resume_source(call: Call) -> SourceView:
    return await _set_paused(call, False)


@router.route("GET", "/sources/{name}/status", scope=Scope.READ,
              summary="A source's last reported status", response=SourceState, errors=(404,))
async def source_status(call: Call) -> SourceState:
    store = await _store(call)
    source = await _get(call, store)
    status = await store.status(source.name)
    if status is None:
        raise Problem(404, f"source {source.name!r} has no status yet (no gateway ran it)")
    return status


@router.route("GET", "/sources/{name}/dead-letters", scope=Scope.READ,
              summary="Messages whose mapping failed, with the reason",
              query=PageQuery, response=Page[DeadLetter], errors=(404,))
async def list_dead_letters(call: Call) -> Page[DeadLetter]:
    store = await _store(call)
    source = await _get(call, store)
    return page_of(await store.dead_letter_list(source.name, limit=10_000), call.query)


@router.route("POST", "/sources/{name}/dead-letters/redrive", scope=Scope.WRITE,
              summary="Map dead letters again with the current mapping and publish them",
              body=Selection, response=RedriveResult, errors=(404,))
async def redrive_dead_letters(call: Call) -> RedriveResult:
    store = await _store(call)
    source = await _get(call, store)
    report = await store.redrive(source.name, call.body.keys)
    return RedriveResult(redriven=report.redriven, failed=report.failed)


@router.route("POST", "/sources/{name}/dead-letters/purge", scope=Scope.WRITE,
              summary="Drop dead letters", body=Selection, response=PurgeResult, errors=(404,))
async def purge_dead_letters(call: Call) -> PurgeResult:
    store = await _store(call)
    source = await _get(call, store)
    return PurgeResult(purged=await store.purge(source.name, call.body.keys))
