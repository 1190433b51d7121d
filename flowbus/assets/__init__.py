"""Assets: the data your flows materialise, and where it came from (Prefect 3's ``prefect.assets``).

Example::

    from flowbus import flow
    from flowbus.assets import Asset, AssetProperties, add_asset_metadata, materialize

    raw = Asset(key="s3://lake/raw/orders.json")
    report = Asset(key="s3://lake/reports/orders.csv",
                   properties=AssetProperties(name="Orders", owners=["data-team"]))

    @materialize(report, asset_deps=[raw], by="pandas")
    def build_report() -> None:
        ...
        add_asset_metadata(report, {"rows": 42})

    @flow
    def nightly() -> None:
        build_report()

When the task run ends it publishes ``flowbus.asset.materialization.succeeded`` (or
``.failed``) about ``report`` and ``flowbus.asset.referenced`` about ``raw``;
docs/sdk.md has the details.
"""

from flowbus.assets.core import Asset, AssetProperties, add_asset_metadata
from flowbus.assets.materialize import MaterializingTask, materialize

__all__ = ["Asset", "AssetProperties", "MaterializingTask", "add_asset_metadata", "materialize"]
