"""``@materialize``: a task that materialises assets (Prefect 3's ``MaterializingTask``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ParamSpec, TypeVar

from flowbus._params import rewrap_method
from flowbus.assets.core import Asset, as_assets
from flowbus.tasks import Task

P = ParamSpec("P")
R = TypeVar("R")

__all__ = ["MaterializingTask", "materialize"]


class MaterializingTask(Task[P, R]):
    """A task whose runs materialise ``assets``; made by :func:`materialize`."""

    def __init__(self, fn: Callable[P, R], *, assets: Sequence[str | Asset],
                 materialized_by: str | None = None, **task_kwargs: Any) -> None:
        if isinstance(assets, str | Asset):
            assets = [assets]
        resolved = as_assets(assets)
        if not resolved:
            raise TypeError("materialize requires at least one asset argument, "
                            "e.g. `@materialize(asset)`")
        if materialized_by is not None and not isinstance(materialized_by, str):
            raise TypeError(f"by= must be a string naming a tool, got {materialized_by!r}")
        super().__init__(fn, **task_kwargs)
        self.assets: list[Asset] = list(resolved)
        self.materialized_by = materialized_by

    def with_options(self, assets: Sequence[str | Asset] | None = None,
                     **options: Any) -> MaterializingTask[P, R]:
        """A copy with some options changed; ``assets=`` replaces the assets."""
        unknown = set(options) - set(self._options)
        if unknown:
            raise TypeError(f"Unknown task option(s) {sorted(unknown)}; "
                            f"options: {sorted(self._options)} and assets")
        return MaterializingTask(
            rewrap_method(self.fn, self._method_kind),
            assets=self.assets if assets is None else assets,
            materialized_by=self.materialized_by, **{**self._options, **options})

    def __repr__(self) -> str:
        return f"MaterializingTask(name={self.name!r}, assets={self.assets!r})"


def materialize(*assets: str | Asset, by: str | None = None,
                **task_kwargs: Any) -> Callable[[Callable[P, R]], MaterializingTask[P, R]]:
    """Make a function a task that materialises ``assets`` (keys or :class:`Asset`).

    ``by`` names the tool that does the work (``"dbt"``, ``"spark"``); every other
    keyword is a ``@task`` option (``asset_deps=[...]`` included). Each run publishes
    ``flowbus.asset.materialization.succeeded`` or ``.failed`` per asset when it ends.

    Example::

        @materialize("s3://lake/orders.csv", by="pandas", retries=2)
        def export_orders(rows: list[dict]) -> None: ...
    """
    if not assets:
        raise TypeError("materialize requires at least one asset argument, "
                        "e.g. `@materialize(asset)`")
    resolved = as_assets(assets)

    def decorator(fn: Callable[P, R]) -> MaterializingTask[P, R]:
        return MaterializingTask(fn, assets=resolved, materialized_by=by, **task_kwargs)

    return decorator
