"""Prefect's filter and sort arguments of the client, applied to the API's records."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from flowbus.client.schemas.sorting import FlowRunSort

_EARLIEST = datetime.min.replace(tzinfo=UTC)


def check_filter(value: Any, kind: type, name: str) -> Any:
    """``value`` as a ``kind`` filter (a dict is validated into one); TypeError otherwise."""
    if value is None or isinstance(value, kind):
        return value
    if isinstance(value, dict):
        return kind.model_validate(value)  # type: ignore[attr-defined]
    raise TypeError(f"{name} must be a {kind.__name__} (or a dict of its fields), got {type(value).__name__}")


def select(records: Sequence[Any], predicates: list[Callable[[Any], bool]], offset: int | None,
           limit: int | None) -> list[Any]:  # fmt: skip
    if offset is not None and offset < 0:
        raise ValueError(f"offset must be >= 0, got {offset}")
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    chosen = [r for r in records if all(p(r) for p in predicates)]
    start = offset or 0
    return chosen[start:] if limit is None else chosen[start:start + limit]


def sort_flow_runs(runs: list[Any], sort: Any) -> list[Any]:
    """Runs in a ``FlowRunSort`` order (None: as the API gave them, newest first)."""
    if sort is None:
        return runs
    try:
        order = FlowRunSort(str(getattr(sort, "value", sort)))
    except ValueError:
        raise ValueError(f"sort {sort!r} is not one of {', '.join(FlowRunSort)}") from None
    if order is FlowRunSort.ID_DESC:
        return sorted(runs, key=lambda r: r.id, reverse=True)
    if order in (FlowRunSort.NAME_ASC, FlowRunSort.NAME_DESC):
        return sorted(runs, key=lambda r: r.name, reverse=order is FlowRunSort.NAME_DESC)
    field = {"START_TIME": "start_time", "EXPECTED_START_TIME": "expected_start_time",
             "NEXT_SCHEDULED_START_TIME": "expected_start_time", "END_TIME": "end_time"}[
        order.value.rsplit("_", 1)[0]]  # fmt: skip
    if order is FlowRunSort.NEXT_SCHEDULED_START_TIME_ASC:
        runs = [r for r in runs if r.state.type.value == "SCHEDULED"]
    present = [r for r in runs if getattr(r, field) is not None]
    missing = [r for r in runs if getattr(r, field) is None]
    present.sort(key=lambda r: getattr(r, field) or _EARLIEST, reverse=order.value.endswith("DESC"))
    return present + missing
