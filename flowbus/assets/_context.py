"""The asset side of a task run: which assets it reads and makes, and its events.

The task engine calls :func:`enter_run` when a task run starts and :func:`finish_run`
once its final state is set (through `flowbus._asset_hooks`). As in Prefect 3, the upstream assets of a run are its
``asset_deps`` plus the assets carried by the task runs whose results are its inputs
(futures, states, or the very objects an earlier task run returned, found by
identity); a ``@materialize`` task carries its own assets downstream, any other task
what it received. A flow run with no assets pays one attribute check per task run.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from events.assets import (
    MATERIALIZATION_FAILED,
    MATERIALIZATION_SUCCEEDED,
    MAX_METADATA_BYTES,
    REFERENCED,
    AssetRef,
    MaterializationData,
    ReferenceData,
    metadata_size,
)
from flowbus import _sink
from flowbus._asset_hooks import current as _current
from flowbus._asset_hooks import inherited
from flowbus.assets.core import Asset
from flowbus.context import FlowRunContext, _task_run_ctx
from flowbus.futures import FlowbusFuture
from flowbus.states import State
from flowbus.utilities.annotations import BaseAnnotation, quote

# Values that are singletons (or interned) cannot tell which run returned them.
_UNTRACKABLE = (type(None), bool, type(Ellipsis), type(NotImplemented))


@dataclass(eq=False)
class _Tracking:
    """Per flow run: the assets each task run carries, and the results that carry them."""

    task_run_assets: dict[str, frozenset[Asset]] = field(default_factory=dict)
    # id(result) -> (task run id, the result itself, held so the id cannot be reused)
    results: dict[int, tuple[str, Any]] = field(default_factory=dict)


@dataclass(eq=False)
class AssetContext:
    """The assets of one task run (Prefect's ``AssetContext``)."""

    task_run_id: str
    flow_run_id: str | None
    direct_asset_dependencies: frozenset[Asset]
    downstream_assets: tuple[Asset, ...]
    upstream_assets: frozenset[Asset]
    materialized_by: str | None = None
    materialization_metadata: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add_asset_metadata(self, asset_key: str, metadata: dict[str, Any]) -> None:
        if asset_key not in {a.key for a in self.downstream_assets}:
            raise ValueError("Can only add metadata to assets that are arguments to @materialize")
        if not isinstance(metadata, dict):
            raise TypeError(f"asset metadata must be a dict, got {type(metadata).__name__}")
        merged = self.materialization_metadata.get(asset_key, {}) | metadata
        size = metadata_size(merged)
        if size > MAX_METADATA_BYTES:
            raise ValueError(f"metadata of asset {asset_key!r} would be {size} bytes as JSON, over "
                             f"the limit of {MAX_METADATA_BYTES}; attach a summary or a link")
        self.materialization_metadata[asset_key] = merged

    def emit_events(self, state: State[Any]) -> None:
        """Publish the run's asset events for its final ``state`` (none when Cached)."""
        if state.name == "Cached" or not self.downstream_assets:
            return
        if state.is_failed():
            event_type = MATERIALIZATION_FAILED
        elif state.is_completed():
            event_type = MATERIALIZATION_SUCCEEDED
        else:
            return
        upstream = sorted(self.upstream_assets | self.direct_asset_dependencies, key=lambda a: a.key)
        for asset in upstream:
            _emit(REFERENCED, asset.key, ReferenceData(
                asset=_ref(asset), flow_run_id=self.flow_run_id, task_run_id=self.task_run_id))
        related = [{"flowbus.resource.id": a.key, "flowbus.resource.role": "asset"}
                   for a in upstream]
        if self.materialized_by:
            related.append({"flowbus.resource.id": self.materialized_by,
                            "flowbus.resource.role": "asset-materialized-by"})
        if self.flow_run_id:
            related.append({"flowbus.resource.id": f"flowbus.flow-run.{self.flow_run_id}",
                            "flowbus.resource.role": "flow-run"})
        related.append({"flowbus.resource.id": f"flowbus.task-run.{self.task_run_id}",
                        "flowbus.resource.role": "task-run"})
        for asset in self.downstream_assets:
            _emit(event_type, asset.key, MaterializationData(
                asset=_ref(asset), status="failed" if state.is_failed() else "succeeded",
                upstream=[_ref(a) for a in upstream], materialized_by=self.materialized_by,
                metadata=self.materialization_metadata.get(asset.key, {}),
                flow_run_id=self.flow_run_id, task_run_id=self.task_run_id, related=related))


def _ref(asset: Asset) -> AssetRef:
    return AssetRef(key=asset.key, properties=asset.properties)


def _emit(event_type: str, key: str, data: MaterializationData | ReferenceData) -> None:
    _sink.emit_event(event_type, key, data.model_dump(mode="json", exclude_none=True))


def current_asset_context(outside_message: str) -> AssetContext:
    """The running task's asset context; ``RuntimeError(outside_message)`` outside one."""
    context: AssetContext | None = _current.get()
    if context is not None:
        return context
    if _task_run_ctx.get() is not None:  # a task that materialises nothing (as Prefect says)
        raise ValueError("Can only add metadata to assets that are arguments to @materialize")
    raise RuntimeError(outside_message)


def enter_run(task: Any, task_run: Any, wait_for: Any,
              flow_ctx: FlowRunContext | None) -> tuple[AssetContext | None, Any]:
    """The asset context of a starting task run, made current, and the token to reset it."""
    deps = getattr(task, "asset_deps", None) or ()
    downstream = getattr(task, "assets", None) or ()
    tracking: _Tracking | None = flow_ctx.asset_tracking if flow_ctx is not None else None
    if tracking is not None:
        upstream = _upstream_assets(tracking, (task_run.parameters, wait_for))
    else:  # in a worker process: what the flow's process found, for the task sent here only
        upstream = frozenset(inherited.get() or ())
        inherited.set(None)
    if not deps and not downstream and not upstream:
        return None, (_current.set(None) if _current.get() is not None else None)
    context = AssetContext(
        task_run_id=task_run.id, flow_run_id=task_run.flow_run_id,
        direct_asset_dependencies=frozenset(deps), downstream_assets=tuple(downstream),
        upstream_assets=upstream, materialized_by=getattr(task, "materialized_by", None))
    _track(flow_ctx, tracking, task_run.id, downstream, upstream | context.direct_asset_dependencies)
    return context, _current.set(context)


def prepare_remote_run(task: Any, task_run: Any, wait_for: Any,
                       flow_ctx: FlowRunContext | None) -> frozenset[Asset]:
    """For a task run about to leave for a worker process: its upstream assets, which
    the worker cannot find (its inputs arrive resolved), tracked here for later runs."""
    tracking: _Tracking | None = flow_ctx.asset_tracking if flow_ctx is not None else None
    upstream = (_upstream_assets(tracking, (task_run.parameters, wait_for))
                if tracking is not None else frozenset())
    deps = frozenset(getattr(task, "asset_deps", None) or ())
    _track(flow_ctx, tracking, task_run.id, getattr(task, "assets", None) or (), upstream | deps)
    return upstream


def _track(flow_ctx: FlowRunContext | None, tracking: _Tracking | None, task_run_id: str,
           downstream: Any, received: frozenset[Asset]) -> None:
    """Record what a task run carries downstream: what it makes, else what it received."""
    if flow_ctx is None:
        return
    if tracking is None:
        tracking = flow_ctx.asset_tracking = _Tracking()
    tracking.task_run_assets[task_run_id] = frozenset(downstream) if downstream else received


def finish_run(context: AssetContext, task_run: Any, state: State[Any],
               flow_ctx: FlowRunContext | None) -> None:
    """Publish the run's asset events; remember which results carry its assets."""
    context.emit_events(state)
    tracking = flow_ctx.asset_tracking if flow_ctx is not None else None
    if tracking is not None and tracking.task_run_assets.get(task_run.id) \
            and task_run.returned is not None:
        _link_result(tracking, task_run.id, task_run.returned[0])


def _trackable(value: Any) -> bool:
    return not (isinstance(value, _UNTRACKABLE) or (type(value) is int and -5 <= value <= 256))


def _link_result(tracking: _Tracking, task_run_id: str, value: Any) -> None:
    """Remember ``value`` and the items one level inside it as results of ``task_run_id``."""
    items: Iterable[Any] = ()
    if isinstance(value, list | tuple | set | frozenset):
        items = value
    elif isinstance(value, dict):
        items = value.values()
    for item in (value, *items):
        if _trackable(item):
            tracking.results[id(item)] = (task_run_id, item)


def _upstream_assets(tracking: _Tracking, inputs: Any) -> frozenset[Asset]:
    """The assets carried by the task runs that produced anything inside ``inputs``."""
    runs: set[str] = set()
    seen: set[int] = set()
    stack = [inputs]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, FlowbusFuture):
            runs.add(str(obj.task_run_id))
            continue
        if isinstance(obj, State):
            run_id = obj._run_ids_now()[1]
            if run_id is not None:
                runs.add(run_id)
            continue
        if isinstance(obj, quote):  # quoted inputs are not looked into, as in Prefect
            continue
        hit = tracking.results.get(id(obj))
        if hit is not None and hit[1] is obj:
            runs.add(hit[0])
        if isinstance(obj, BaseAnnotation):
            stack.append(obj.unwrap())
        elif isinstance(obj, list | tuple | set | frozenset):
            stack.extend(obj)
        elif isinstance(obj, dict):
            stack.extend(obj.values())
    assets: set[Asset] = set()
    for run_id in runs:
        assets.update(tracking.task_run_assets.get(run_id, ()))
    return frozenset(assets)
