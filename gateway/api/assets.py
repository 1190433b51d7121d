"""``/api/v1/assets``: the asset catalog, kept from the asset events in ``flowbus-assets``.

An asset key is a URI (``s3://bucket/orders.csv``): in the path it is percent-encoded
as one segment, ``/api/v1/assets/s3%3A%2F%2Fbucket%2Forders.csv``.
"""

from __future__ import annotations

from pydantic import Field

from events.assets import (
    MAX_ASSET_KEY_LENGTH,
    AssetRecord,
    InvalidAssetKey,
    check_asset_key,
    get_asset,
    list_assets,
)
from events.kv import KV
from gateway.api import run_control
from gateway.api.paging import Page, PageQuery, page_of
from gateway.api.routing import ApiRouter, Call
from gateway.auth import Scope
from gateway.problems import Problem

router = ApiRouter()


class Asset(AssetRecord):
    """An asset, its latest materialisation and its lineage."""

    upstream: list[str] = Field(default_factory=list, description=(
        "keys of the assets its latest materialisation read (sorted)"))
    downstream: list[str] = Field(default_factory=list, description=(
        "keys of the assets whose latest materialisation read it (sorted)"))


def _with_lineage(records: list[AssetRecord], wanted: list[AssetRecord]) -> list[Asset]:
    """``wanted`` as API assets, with the lineage the latest materialisations of all
    ``records`` give."""
    downstream: dict[str, set[str]] = {}
    for record in records:
        for key in _upstream(record):
            downstream.setdefault(key, set()).add(record.key)
    return [Asset(**r.model_dump(), upstream=sorted(_upstream(r)),
                  downstream=sorted(downstream.get(r.key, ()))) for r in wanted]


def _upstream(record: AssetRecord) -> set[str]:
    latest = record.latest_materialization
    return set(latest.upstream) if latest is not None else set()


class AssetQuery(PageQuery):
    """Filters of the asset list (sorted by key)."""

    prefix: str | None = Field(default=None, min_length=1, max_length=MAX_ASSET_KEY_LENGTH,
                               pattern=r"^[^\x00-\x1f\x7f]+$",
                               description="only assets whose key starts with this, e.g. s3://lake/")


async def _kv(call: Call) -> KV:
    return await call.gateway.kv(call.gateway.bus.layout.assets)


@router.route("GET", "/assets", scope=Scope.READ, summary="List assets with their latest materialisation",
              query=AssetQuery, response=Page[Asset])
async def list_all_assets(call: Call) -> Page[Asset]:
    query: AssetQuery = call.query
    records = await list_assets(await _kv(call))
    wanted = [r for r in records if query.prefix is None or r.key.startswith(query.prefix)]
    return page_of(_with_lineage(records, wanted), query)


@router.route("GET", "/assets/{key}", scope=Scope.READ,
              summary="An asset and its latest materialisation (key percent-encoded)",
              response=Asset, errors=(404,))
async def get_one_asset(call: Call) -> Asset:
    key = call.path("key")
    try:
        check_asset_key(key)
    except InvalidAssetKey as exc:
        raise Problem(404, f"no asset can have key {key[:100]!r}: {exc}") from None
    kv = await _kv(call)
    record = await get_asset(kv, key)
    if record is None:
        raise Problem(404, f"no asset with key {key!r}; assets appear once a task materialises "
                      "or references them")
    return _with_lineage(await list_assets(kv), [record])[0]


@router.route("DELETE", "/assets/{key}", scope=Scope.WRITE,
              summary="Remove an asset from the catalog (key percent-encoded); a later "
                      "materialisation adds it again",
              status=204, errors=(404, 409, 503))
async def delete_one_asset(call: Call) -> None:
    key = call.path("key")
    try:
        check_asset_key(key)
    except InvalidAssetKey as exc:
        raise Problem(404, f"no asset can have key {key[:100]!r}: {exc}") from None
    if await get_asset(await _kv(call), key) is None:  # 404 without asking the orchestrator
        raise Problem(404, f"no asset with key {key!r}")
    # The leading orchestrator owns the catalog: it deletes the record.
    await run_control.delete_asset(call.gateway, key)
