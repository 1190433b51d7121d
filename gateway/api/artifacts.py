"""``/api/v1/artifacts``: the artifacts runs created, stored in ``flowbus-artifacts``."""

from __future__ import annotations

from pydantic import Field

from events.artifacts import (
    KEY_PATTERN,
    ArtifactRecord,
    get_artifact,
    latest_artifact,
    list_artifacts,
)
from events.kv import KV
from gateway.api.paging import Page, PageQuery, page_of
from gateway.api.routing import ApiRouter, Call
from gateway.auth import Scope
from gateway.problems import Problem

router = ApiRouter()
_UUID = r"^[0-9a-fA-F-]{36}$"


class Artifact(ArtifactRecord):
    """A stored artifact."""


class ArtifactQuery(PageQuery):
    """Filters of the artifact list (newest first); all given filters must match."""

    key: str | None = Field(default=None, pattern=KEY_PATTERN, description="artifact key")
    flow_run_id: str | None = Field(default=None, pattern=_UUID, description="flow run id")
    task_run_id: str | None = Field(default=None, pattern=_UUID, description="task run id")
    type: str | None = Field(default=None, pattern=r"^[a-z]{1,32}$",
                             description="markdown, table, link, image or progress")


async def _kv(call: Call) -> KV:
    return await call.gateway.kv(call.gateway.bus.layout.artifacts)


def _key(call: Call) -> str:
    from events.artifacts import valid_key

    key = call.path("key")
    if not valid_key(key):
        raise Problem(404, f"no artifact with key {key[:100]!r}")
    return key


@router.route("GET", "/artifacts", scope=Scope.READ, summary="List artifacts",
              query=ArtifactQuery, response=Page[Artifact])
async def list_all_artifacts(call: Call) -> Page[Artifact]:
    query: ArtifactQuery = call.query
    records = await list_artifacts(await _kv(call), key=query.key, flow_run_id=query.flow_run_id,
                                   task_run_id=query.task_run_id, type=query.type)
    return page_of([Artifact.model_validate(r.model_dump()) for r in records], query)


@router.route("GET", "/artifacts/{key}", scope=Scope.READ, summary="The latest artifact with a key",
              response=Artifact, errors=(404,))
async def get_latest_artifact(call: Call) -> Artifact:
    key = _key(call)
    record = await latest_artifact(await _kv(call), key)
    if record is None:
        raise Problem(404, f"no artifact with key {key!r}")
    return Artifact.model_validate(record.model_dump())


@router.route("GET", "/artifacts/{key}/history", scope=Scope.READ,
              summary="Every artifact with a key, newest first", query=PageQuery,
              response=Page[Artifact], errors=(404,))
async def get_artifact_history(call: Call) -> Page[Artifact]:
    key = _key(call)
    records = await list_artifacts(await _kv(call), key=key)
    if not records:
        raise Problem(404, f"no artifact with key {key!r}")
    return page_of([Artifact.model_validate(r.model_dump()) for r in records], call.query)


@router.route("GET", "/artifacts/id/{artifact_id}", scope=Scope.READ, summary="An artifact by id",
              response=Artifact, errors=(404,))
async def get_artifact_by_id(call: Call) -> Artifact:
    import uuid

    artifact_id = call.path("artifact_id")
    try:
        uuid.UUID(artifact_id)
    except ValueError:
        raise Problem(404, f"no artifact with id {artifact_id[:100]!r}") from None
    record = await get_artifact(await _kv(call), artifact_id)
    if record is None:
        raise Problem(404, f"no artifact with id {artifact_id!r}")
    return Artifact.model_validate(record.model_dump())
