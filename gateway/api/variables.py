"""``/api/v1/variables``: named JSON values in ``flowbus-variables``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from events.errors import AlreadyExists
from events.variables import MAX_VALUE_BYTES, NAME_PATTERN, VariableRecord
from gateway.api.paging import Page, PageQuery, page_of
from gateway.api.routing import ApiRouter, Call, check_key
from gateway.auth import Scope
from gateway.problems import Problem

router = ApiRouter()


class VariableCreate(BaseModel):
    """A new variable."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN, description="lowercase letters, digits, '_' or '-'")
    value: Any = Field(description="any JSON value, at most 64 KiB encoded")
    tags: list[str] = Field(default_factory=list, max_length=100, description="labels")


class VariableUpdate(BaseModel):
    """Changes to a variable; absent fields stay as they are."""

    model_config = ConfigDict(extra="forbid")

    value: Any = Field(default=None, description="the new value")
    tags: list[str] | None = Field(default=None, max_length=100, description="new labels")


class Variable(VariableRecord):
    """A stored variable (the record the SDK reads and writes too)."""


def _check_size(variable: Variable) -> bytes:
    raw = variable.model_dump_json().encode()
    if len(raw) > MAX_VALUE_BYTES:
        raise Problem(413, f"variable {variable.name!r} is {len(raw)} bytes encoded, over "
                      f"{MAX_VALUE_BYTES}")
    return raw


async def _load(call: Call) -> Variable:
    name = check_key(call.path("name"), "variable")
    kv = await call.gateway.kv(call.gateway.bus.layout.variables)
    entry = await kv.get(name)
    if entry is None:
        raise Problem(404, f"no variable named {name!r}")
    return Variable.model_validate_json(entry.value)


@router.route("POST", "/variables", scope=Scope.WRITE, summary="Create a variable",
              body=VariableCreate, response=Variable, status=201, errors=(409, 413))
async def create_variable(call: Call) -> Variable:
    body: VariableCreate = call.body
    now = datetime.now(UTC)
    variable = Variable(**body.model_dump(), created=now, updated=now)
    kv = await call.gateway.kv(call.gateway.bus.layout.variables)
    try:
        await kv.create(variable.name, _check_size(variable))
    except AlreadyExists:
        raise Problem(409, f"a variable named {variable.name!r} already exists") from None
    return variable


@router.route("GET", "/variables", scope=Scope.READ, summary="List variables",
              query=PageQuery, response=Page[Variable])
async def list_variables(call: Call) -> Page[Variable]:
    kv = await call.gateway.kv(call.gateway.bus.layout.variables)
    out = []
    for name in await kv.keys():
        entry = await kv.get(name)
        if entry is not None:
            out.append(Variable.model_validate_json(entry.value))
    return page_of(out, call.query)


@router.route("GET", "/variables/{name}", scope=Scope.READ, summary="Get a variable",
              response=Variable, errors=(404,))
async def get_variable(call: Call) -> Variable:
    return await _load(call)


@router.route("PATCH", "/variables/{name}", scope=Scope.WRITE, summary="Change a variable",
              body=VariableUpdate, response=Variable, errors=(404, 413))
async def update_variable(call: Call) -> Variable:
    body: VariableUpdate = call.body
    current = await _load(call)
    changes = body.model_dump(exclude_unset=True)
    if changes.get("tags") is None:
        changes.pop("tags", None)
    variable = current.model_copy(update={**changes, "updated": datetime.now(UTC)})
    kv = await call.gateway.kv(call.gateway.bus.layout.variables)
    await kv.put(variable.name, _check_size(variable))
    return variable


@router.route("DELETE", "/variables/{name}", scope=Scope.WRITE, summary="Delete a variable",
              status=204, errors=(404,))
async def delete_variable(call: Call) -> None:
    variable = await _load(call)
    kv = await call.gateway.kv(call.gateway.bus.layout.variables)
    await kv.delete(variable.name)
