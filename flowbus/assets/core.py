"""``Asset`` and ``add_asset_metadata``: what a materialising task names and reports."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from events.assets import AssetKey, AssetProperties

__all__ = ["Asset", "AssetProperties", "add_asset_metadata"]


class Asset(BaseModel):
    """Data a flow materialises, named by a URI-like key (``s3://bucket/orders.csv``).

    A key that is not a URI with a lowercase scheme, is longer than 512 characters or
    contains a restricted character (space, ``# ? & % " ' < > [ ] { } | \\ ^ `` ` or a
    control character) is refused with a ``ValueError`` (pydantic's
    ``ValidationError``) saying which rule it broke.

    Example::

        orders = Asset(key="postgres://warehouse/orders",
                       properties=AssetProperties(name="Orders", owners=["ana"]))
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: AssetKey
    properties: AssetProperties | None = Field(
        default=None,
        description="Properties of the asset. Setting this will overwrite properties of a known asset.",
    )

    def __repr__(self) -> str:
        return f"Asset(key={self.key!r})"

    def __hash__(self) -> int:
        return hash(self.key)

    def add_metadata(self, metadata: dict[str, Any]) -> None:
        """Attach ``metadata`` to this asset's materialisation event (inside its task)."""
        from flowbus.assets._context import current_asset_context

        current_asset_context("Unable add Asset metadata when not inside of an AssetContext"
                              ).add_asset_metadata(self.key, metadata)


def add_asset_metadata(asset: str | Asset, metadata: dict[str, Any]) -> None:
    """Attach ``metadata`` (JSON, merged over what was added before) to the event of
    ``asset``, which must be one the running ``@materialize`` task materialises.

    Example::

        @materialize("s3://lake/orders.csv")
        def export() -> None:
            add_asset_metadata("s3://lake/orders.csv", {"rows": 1200})
    """
    from flowbus.assets._context import current_asset_context

    context = current_asset_context(
        "Unable to call `add_asset_metadata` when not inside of an AssetContext")
    context.add_asset_metadata(asset if isinstance(asset, str) else asset.key, metadata)


def as_assets(values: Any) -> tuple[Asset, ...]:
    """``values`` (keys or assets) as assets, in order, each once; validates every key."""
    out: dict[str, Asset] = {}
    for value in values or ():
        asset = value if isinstance(value, Asset) else Asset(key=value)
        out.setdefault(asset.key, asset)
    return tuple(out.values())
