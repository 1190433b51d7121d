"""The run context: which flow run and task run the current code belongs to.

Example::

    from flowbus.context import get_run_context, tags

    with tags("nightly"):
        my_flow()          # the flow run and its task runs carry the tag "nightly"
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as _dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from flowbus._carry import with_context
from flowbus.exceptions import MissingContextError
from flowbus.states import State

# Events carry parameters on every state change: keep that cheap and bounded for big
# inputs (a long list, a data frame) while small, JSON-able parameters pass unchanged.
_MAX_ITEMS = 1000
_MAX_REPR = 1000


def _jsonable(value: Any) -> Any:
    """A JSON-safe rendering of a parameter value for events (a bounded repr otherwise)."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, list | tuple):
        if len(value) > _MAX_ITEMS:
            return [_jsonable(v) for v in value[:_MAX_ITEMS]] + [f"... {len(value) - _MAX_ITEMS} more"]
        return [_jsonable(v) for v in value]
    if isinstance(value, dict) and len(value) <= _MAX_ITEMS:
        return {str(k): _jsonable(v) for k, v in value.items()}
    text = repr(value)
    return text if len(text) <= _MAX_REPR else text[:_MAX_REPR] + "..."


@dataclass(slots=True, eq=False)
class FlowRun:
    """The record of one flow run."""

    id: str
    name: str
    flow_name: str
    parameters: dict[str, Any]
    tags: tuple[str, ...]
    state: State[Any]
    run_count: int = 0
    deployment_id: str | None = None
    deployment_name: str | None = None
    parent_flow_run_id: str | None = None
    parent_task_run_id: str | None = None
    scheduled_start_time: _dt.datetime = field(
        default_factory=lambda: _dt.datetime.now(_dt.UTC)
    )
    start_time: _dt.datetime | None = None
    end_time: _dt.datetime | None = None
    # What the body returned, futures resolved, as a 1-tuple; None until it returns.
    returned: tuple[Any] | None = None
    # The attempt of the server's record this run executes (0: no record), for
    # durable task reuse (flowbus._durable).
    record_attempt: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The JSON-safe record carried in ``flowbus.flow-run.*`` events."""
        return {
            "id": self.id,
            "name": self.name,
            "flow_name": self.flow_name,
            "parameters": _jsonable(self.parameters),
            "tags": list(self.tags),
            "state": self.state.to_dict(),
            "run_count": self.run_count,
            "deployment_id": self.deployment_id,
            "parent_flow_run_id": self.parent_flow_run_id,
            "parent_task_run_id": self.parent_task_run_id,
            "scheduled_start_time": self.scheduled_start_time.isoformat(),
            "start_time": self.start_time.isoformat() if self.start_time else None,
            "end_time": self.end_time.isoformat() if self.end_time else None,
        }


@dataclass(slots=True, eq=False)
class TaskRun:
    """The record of one task run."""

    id: str
    name: str
    task_name: str
    task_key: str
    parameters: dict[str, Any]
    tags: tuple[str, ...]
    state: State[Any]
    flow_run_id: str | None
    run_count: int = 0
    cache_key: str | None = None
    # ``<task key>/<n>``: the n-th run of its task in the flow run (flowbus._durable)
    dynamic_key: str | None = None
    # What the body returned, as a 1-tuple; None until it returns.
    returned: tuple[Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON-safe record carried in ``flowbus.task-run.*`` events."""
        return {
            "id": self.id,
            "name": self.name,
            "task_name": self.task_name,
            "task_key": self.task_key,
            "parameters": _jsonable(self.parameters),
            "tags": list(self.tags),
            "state": self.state.to_dict(),
            "run_count": self.run_count,
            "flow_run_id": self.flow_run_id,
            "cache_key": self.cache_key,
        }


def _construct(cls: type[Any], fields: dict[str, Any]) -> Any:
    """A context built from `fields` without checks, as pydantic's ``model_construct``
    builds Prefect's: fields not given take their defaults, or stay unset (reading one
    raises `AttributeError`)."""
    import dataclasses

    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(fields) - set(known))
    if unknown:
        raise TypeError(f"{cls.__name__} has no fields {unknown}; its fields: {sorted(known)}")
    context = object.__new__(cls)
    for name, spec in known.items():
        if name in fields:
            object.__setattr__(context, name, fields[name])
        elif spec.default is not dataclasses.MISSING:
            object.__setattr__(context, name, spec.default)
        elif spec.default_factory is not dataclasses.MISSING:
            object.__setattr__(context, name, spec.default_factory())
    return context


def _result_store_of(owner: Any, flow: Any = None, *, default: bool = False) -> Any:
    """A `ResultStore` for ``owner``'s ``result_storage`` (a task's: else its flow's)
    and serializer; a slug or directory is resolved, and no storage too if ``default``."""
    from flowbus.results import ResultStore, resolve_result_store

    storage = getattr(owner, "result_storage", None)
    if storage is None and flow is not None:  # a task without its own storage uses its flow's
        storage = getattr(flow, "result_storage", None)
    if isinstance(storage, str) or (storage is None and default):
        storage = resolve_result_store(storage)
    return ResultStore(result_storage=storage, serializer=getattr(owner, "_serializer", None))


@dataclass(slots=True, eq=False)
class FlowRunContext:
    """What code inside a flow run can see: the flow, its run, its task runner."""

    flow: Any
    flow_run: FlowRun
    task_runner: Any
    parameters: dict[str, Any]
    log_prints: bool
    _result_store: Any = None
    # Which assets the flow's task runs carry downstream (`flowbus.assets._context`).
    asset_tracking: Any = None
    observed_pauses: int = 0  # pause_flow_run / suspend_flow_run calls so far (their keys)
    dynamic_keys: dict[str, int] = field(default_factory=dict)  # task_key -> calls so far

    @property
    def result_store(self) -> Any:
        """The flow's `ResultStore` (Prefect's ``result_store``): its ``result_storage``
        is the flow's storage resolved (a saved block named by slug, or the default
        result storage), made when first read."""
        if self._result_store is None:
            self._result_store = _result_store_of(self.flow, default=True)
        return self._result_store

    @result_store.setter
    def result_store(self, value: Any) -> None:
        self._result_store = value

    @classmethod
    def get(cls) -> FlowRunContext | None:
        return _flow_run_ctx.get()

    @classmethod
    def model_construct(cls, **fields: Any) -> FlowRunContext:
        """A context from `fields`, unchecked (Prefect's pydantic ``model_construct``)."""
        return _construct(cls, fields)  # type: ignore[no-any-return]


@dataclass(slots=True, eq=False)
class TaskRunContext:
    """What code inside a task run can see: the task, its run, its parameters."""

    task: Any
    task_run: TaskRun
    parameters: dict[str, Any]
    log_prints: bool
    flow_run_context: FlowRunContext | None = None

    @classmethod
    def get(cls) -> TaskRunContext | None:
        return _task_run_ctx.get()

    @property
    def result_store(self) -> Any:
        """The task's `ResultStore`: its ``result_storage`` (else its flow's) and its
        ``result_serializer``, as Prefect's ``TaskRunContext.result_store``."""
        flow_ctx = self.flow_run_context or _flow_run_ctx.get()
        return _result_store_of(self.task, flow_ctx.flow if flow_ctx is not None else None)

    @classmethod
    def model_construct(cls, **fields: Any) -> TaskRunContext:
        """A context from `fields`, unchecked (Prefect's pydantic ``model_construct``):
        ``TaskRunContext.model_construct(task=my_task)`` for a cache policy's key."""
        return _construct(cls, fields)  # type: ignore[no-any-return]


_flow_run_ctx: contextvars.ContextVar[FlowRunContext | None] = contextvars.ContextVar(
    "flowbus_flow_run", default=None
)
_task_run_ctx: contextvars.ContextVar[TaskRunContext | None] = contextvars.ContextVar(
    "flowbus_task_run", default=None
)
_tags: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar("flowbus_tags", default=())


def get_run_context() -> FlowRunContext | TaskRunContext:
    """The innermost run context: the task run's inside a task, else the flow run's.

    Raises `MissingContextError` outside any run.
    """
    task_ctx = _task_run_ctx.get()
    if task_ctx is not None:
        return task_ctx
    flow_ctx = _flow_run_ctx.get()
    if flow_ctx is not None:
        return flow_ctx
    raise MissingContextError(
        "No run context: get_run_context() only works inside a flow or task run."
    )


def current_tags() -> tuple[str, ...]:
    """The tags opened with `tags()` around the current code."""
    return _tags.get()


@dataclass(frozen=True, slots=True)
class TagsContext:
    """Prefect's view of the open `tags()` blocks: ``TagsContext.get().current_tags``."""

    current_tags: set[str] = field(default_factory=set)

    @classmethod
    def get(cls) -> TagsContext:
        return cls(current_tags=set(_tags.get()))


@contextlib.contextmanager
def tags(*new_tags: str) -> Iterator[set[str]]:
    """Add tags to every flow and task run created inside the block.

    Example::

        with tags("db", "nightly"):
            load()
    """
    current = _tags.get()
    merged = current + tuple(t for t in new_tags if t not in current)
    token = _tags.set(merged)
    try:
        yield set(merged)
    finally:
        _tags.reset(token)


__all__ = [
    "FlowRun",
    "FlowRunContext",
    "TagsContext",
    "TaskRun",
    "TaskRunContext",
    "get_run_context",
    "tags",
    "with_context",
]
