"""``/api/v1/api-keys``: create (the key is shown once), list and revoke API keys."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from gateway.api.paging import Page, PageQuery, page_of
from gateway.api.routing import ApiRouter, Call, check_key
from gateway.auth import ApiKeyRecord, Scope
from gateway.problems import Problem

router = ApiRouter()


class ApiKeyCreate(BaseModel):
    """A new API key."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, description="what the key is for")
    scopes: list[Scope] = Field(min_length=1, max_length=4, description="what it may do")


class ApiKey(BaseModel):
    """An API key as listed (never the key itself)."""

    id: str = Field(description="public id of the key")
    name: str = Field(description="what the key is for")
    scopes: list[Scope] = Field(description="what it may do")
    created: datetime = Field(description="when it was created")


class ApiKeyCreated(ApiKey):
    """The answer to creating a key: the only time the key is shown."""

    key: str = Field(description="the key; send it as 'Authorization: Bearer <key>'")


def _public(record: ApiKeyRecord) -> ApiKey:
    return ApiKey(id=record.id, name=record.name, scopes=record.scopes, created=record.created)


@router.route("POST", "/api-keys", scope=Scope.ADMIN, summary="Create an API key",
              body=ApiKeyCreate, response=ApiKeyCreated, status=201)
async def create_api_key(call: Call) -> ApiKeyCreated:
    body: ApiKeyCreate = call.body
    record, token = await call.gateway.auth.keys.create(body.name, sorted(set(body.scopes)))
    return ApiKeyCreated(**_public(record).model_dump(), key=token)


@router.route("GET", "/api-keys", scope=Scope.ADMIN, summary="List API keys",
              query=PageQuery, response=Page[ApiKey])
async def list_api_keys(call: Call) -> Page[ApiKey]:
    records = await call.gateway.auth.keys.list()
    return page_of([_public(r) for r in records], call.query)


@router.route("DELETE", "/api-keys/{key_id}", scope=Scope.ADMIN, summary="Revoke an API key",
              status=204, errors=(404,))
async def delete_api_key(call: Call) -> None:
    key_id = check_key(call.path("key_id"), "API key")
    if not await call.gateway.auth.keys.delete(key_id):
        raise Problem(404, f"no API key with id {key_id!r}")
