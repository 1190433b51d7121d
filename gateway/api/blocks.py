"""``/api/v1/blocks``: saved blocks, listed and deleted; secret fields are always masked.

Blocks are created by the SDK (``Block.save``); the API never returns a secret
field's value, to any key: only the SDK, holding ``FLOWBUS_SECRETS_KEY``, opens them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from events.blocks import (
    NAME_PATTERN,
    SLUG_PATTERN,
    BlockDocument,
    block_key,
    public_view,
    valid_slug,
)
from events.kv import KV
from gateway.api.paging import Page, PageQuery, page_of
from gateway.api.routing import ApiRouter, Call
from gateway.auth import Scope
from gateway.problems import Problem

router = ApiRouter()


class Block(BaseModel):
    """A saved block, secret fields masked."""

    id: str = Field(description="block document id")
    block_type: str = Field(description="the block class's slug, e.g. 'secret'")
    name: str = Field(description="the name it was saved under")
    data: dict[str, Any] = Field(description="field values; secret ones are '********'")
    secret_fields: list[str] = Field(description="fields whose values are encrypted at rest")
    created: datetime = Field(description="when it was first saved")
    updated: datetime = Field(description="when it was last saved")


class BlockQuery(PageQuery):
    """Filters of the block list."""

    block_type: str | None = Field(default=None, pattern=SLUG_PATTERN, description="block type slug")


async def _kv(call: Call) -> KV:
    return await call.gateway.kv(call.gateway.bus.layout.blocks)


async def _load(call: Call) -> BlockDocument:
    import re

    block_type, name = call.path("block_type"), call.path("name")
    if not valid_slug(block_type) or re.fullmatch(NAME_PATTERN, name) is None:
        raise Problem(404, f"no block {block_type[:100]!r}/{name[:100]!r}")
    entry = await (await _kv(call)).get(block_key(block_type, name))
    if entry is None:
        raise Problem(404, f"no {block_type} block named {name!r}")
    return BlockDocument.model_validate_json(entry.value)


@router.route("GET", "/blocks", scope=Scope.READ, summary="List blocks (secrets masked)",
              query=BlockQuery, response=Page[Block])
async def list_blocks(call: Call) -> Page[Block]:
    query: BlockQuery = call.query
    kv = await _kv(call)
    out = []
    for key in await kv.keys():
        if query.block_type is not None and not key.startswith(f"{query.block_type}."):
            continue
        entry = await kv.get(key)
        if entry is not None:
            out.append(Block.model_validate(public_view(BlockDocument.model_validate_json(entry.value))))
    out.sort(key=lambda b: (b.block_type, b.name))
    return page_of(out, query)


@router.route("GET", "/blocks/{block_type}/{name}", scope=Scope.READ,
              summary="A block (secrets masked)", response=Block, errors=(404,))
async def get_block(call: Call) -> Block:
    return Block.model_validate(public_view(await _load(call)))


@router.route("DELETE", "/blocks/{block_type}/{name}", scope=Scope.WRITE, summary="Delete a block",
              status=204, errors=(404,))
async def delete_block(call: Call) -> None:
    document = await _load(call)
    await (await _kv(call)).delete(block_key(document.block_type, document.name))



