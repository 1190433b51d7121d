"""Tasks: functions whose calls are tracked as task runs.

Example::

    from flowbus import flow, task

    @task(retries=2, retry_delay_seconds=[1, 5])
    def fetch(url: str) -> str: ...

    @flow
    def crawl(urls: list[str]):
        pages = fetch.map(urls)          # runs on the flow's task runner
        return [p.result() for p in pages]
"""

from __future__ import annotations

import copy
import datetime as _dt
import functools
import inspect
from collections.abc import Callable, Coroutine, Iterable
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, overload

from flowbus import _engine, _options_check
from flowbus._hooks import Hooks, alias
from flowbus._params import CallShape, rewrap_method
from flowbus._params import unwrap_method as _unwrap_method
from flowbus._runner_api import mapped_calls
from flowbus.cache_policies import DEFAULT, NONE, CacheKeyFnPolicy, CachePolicy, hash_objects
from flowbus.futures import FlowbusFuture, FutureList
from flowbus.results import ResultStorage
from flowbus.serializers import resolve_serializer
from flowbus.utilities.annotations import unmapped
from flowbus.visualization import _tracker as _viz_tracker

if TYPE_CHECKING:
    from flowbus.background import TaskRunFuture
    from flowbus.serializers import Serializer

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

_NOT_SET: Any = object()


def task_input_hash(context: Any, arguments: dict[str, Any]) -> str | None:
    """A cache key from the task's identity and its inputs (use as `cache_key_fn`)."""
    task = context.task
    return hash_objects(task.task_key, task.fn.__code__.co_code.hex(), arguments)


def exponential_backoff(backoff_factor: float) -> Callable[[int], list[float]]:
    """Retry delays that double each time: ``backoff_factor * 2**n`` for retry n (0-based).

    Example::

        @task(retries=3, retry_delay_seconds=exponential_backoff(10))  # 10, 20, 40 s
    """

    def delays(retries: int) -> list[float]:
        return [backoff_factor * 2**n for n in range(retries)]

    return delays


def _asset_list(asset_deps: Iterable[Any] | None) -> list[Any]:
    if not asset_deps:
        return []
    from flowbus.assets.core import as_assets  # pydantic loads only for tasks with assets

    return list(as_assets([asset_deps] if isinstance(asset_deps, str) else asset_deps))


def _listify(hooks: Any) -> list[Callable[..., Any]]:
    if hooks is None:
        return []
    if callable(hooks):
        return [hooks]
    return list(hooks)


class Task(Generic[P, R]):
    """A function whose calls are tracked as task runs. Made by `@task`."""

    on_completion_hooks = alias("on_completion")
    on_failure_hooks = alias("on_failure")
    on_running_hooks = alias("on_running")

    def __init__(
        self,
        fn: Callable[P, R],
        name: str | None = None,
        description: str | None = None,
        tags: Iterable[str] | None = None,
        version: str | None = None,
        cache_policy: CachePolicy | None = _NOT_SET,
        cache_key_fn: Callable[[Any, dict[str, Any]], str | None] | None = None,
        cache_expiration: _dt.timedelta | None = None,
        task_run_name: str | Callable[..., str] | None = None,
        retries: int | None = None,
        retry_delay_seconds: float | list[float] | Callable[[int], list[float]] | None = None,
        retry_jitter_factor: float | None = None,
        retry_condition_fn: Callable[[Any, Any, Any], bool] | None = None,
        persist_result: bool | None = None,
        result_storage: ResultStorage | str | None = None,
        result_storage_key: str | None = None,
        result_serializer: Serializer | str | None = None,
        cache_result_in_memory: bool = True,
        timeout_seconds: float | None = None,
        log_prints: bool | None = None,
        refresh_cache: bool | None = None,
        on_completion: list[Callable[..., Any]] | None = None,
        on_failure: list[Callable[..., Any]] | None = None,
        on_running: list[Callable[..., Any]] | None = None,
        on_commit: list[Callable[..., Any]] | None = None,
        on_rollback: list[Callable[..., Any]] | None = None,
        viz_return_value: Any = None,
        asset_deps: Iterable[Any] | None = None,
    ) -> None:
        fn, self._method_kind = _unwrap_method(fn)
        if not callable(fn):
            raise TypeError(f"@task needs a function, got {fn!r}")
        if retries is not None and retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        if timeout_seconds is not None and timeout_seconds < 0:
            raise ValueError(f"timeout_seconds must be >= 0 (0: no timeout), got {timeout_seconds}")
        timeout_seconds = timeout_seconds or None  # 0 unsets it, as in Prefect
        _options_check.check_reserved_arguments(fn)
        self.fn = fn
        # inspect.signature(obj) is the function's. A callable object's attributes (a
        # flow's `fn`, `name`, ...) are not the task's: only a function's are copied.
        functools.update_wrapper(self, fn, updated=functools.WRAPPER_UPDATES if inspect.isfunction(fn) or inspect.ismethod(fn) else ())
        self.name = name or fn.__name__
        self.description = description if description is not None else inspect.getdoc(fn)
        self.tags = set(tags or ())
        self._tags = tuple(sorted(self.tags))
        self.version = version
        self.task_key = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', self.name)}"
        self.isasync = inspect.iscoroutinefunction(fn) or getattr(fn, "isasync", False) is True  # a flow too
        self.cache_key_fn = cache_key_fn
        self.cache_expiration = cache_expiration
        self.task_run_name = _options_check.run_name(task_run_name, "task_run_name")
        self.retries = retries or 0
        self.retry_delay_seconds = retry_delay_seconds if retry_delay_seconds is not None else 0
        self.retry_jitter_factor = retry_jitter_factor
        self.retry_condition_fn = retry_condition_fn
        self.result_storage = result_storage
        self.result_storage_key = result_storage_key
        self.result_serializer = result_serializer
        self._serializer = resolve_serializer(result_serializer)
        self.cache_result_in_memory = cache_result_in_memory
        self.timeout_seconds = timeout_seconds
        self.log_prints = log_prints
        self.refresh_cache = bool(refresh_cache)
        self.on_completion = Hooks(on_completion, kind="on_completion", owner="task")
        self.on_failure = Hooks(on_failure, kind="on_failure", owner="task")
        self.on_running = Hooks(on_running, kind="on_running", owner="task")
        self.on_commit_hooks = _listify(on_commit)
        self.on_rollback_hooks = _listify(on_rollback)
        self.viz_return_value = viz_return_value
        # Upstream assets of every run (keys or `flowbus.assets.Asset`), checked now.
        self.asset_deps: list[Any] = _asset_list(asset_deps)
        self._shape = CallShape(fn)
        self._method_shape: CallShape | None = None
        self._init_caching(cache_policy, persist_result)
        # Saved to rebuild the task in `with_options`.
        self._options = {
            "name": name, "description": description, "tags": tags, "version": version,
            "cache_policy": cache_policy, "cache_key_fn": cache_key_fn,
            "cache_expiration": cache_expiration, "task_run_name": task_run_name,
            "retries": retries, "retry_delay_seconds": retry_delay_seconds,
            "retry_jitter_factor": retry_jitter_factor, "retry_condition_fn": retry_condition_fn,
            "persist_result": persist_result, "result_storage": result_storage,
            "result_storage_key": result_storage_key, "result_serializer": result_serializer,
            "cache_result_in_memory": cache_result_in_memory, "timeout_seconds": timeout_seconds,
            "log_prints": log_prints, "refresh_cache": refresh_cache,
            "on_completion": on_completion, "on_failure": on_failure, "on_running": on_running,
            "viz_return_value": viz_return_value, "asset_deps": asset_deps,
            "on_commit": on_commit, "on_rollback": on_rollback,
        }  # fmt: skip

    def _init_caching(self, cache_policy: Any, persist_result: bool | None) -> None:
        # As in Prefect 3: asking for a cache (or a storage option) turns persistence on;
        # without any of those a task neither caches nor persists, keeping calls cheap.
        if self.cache_key_fn is not None:
            policy: CachePolicy | None = CacheKeyFnPolicy(cache_key_fn=self.cache_key_fn)
        elif cache_policy is _NOT_SET or cache_policy is None or cache_policy is NONE:
            policy = None
        else:
            policy = cache_policy
        self._user_persist_result = persist_result
        persist = persist_result
        if persist is None:
            persist = policy is not None or any(
                o is not None for o in (self.result_storage, self.result_storage_key, self.result_serializer)
            )
        self._persist = persist
        self._cache_policy = policy if persist else None
        # The public attributes read as Prefect's do (its defaults: `DEFAULT`, and None
        # for "not decided"); `_persist` / `_cache_policy` above decide what runs do.
        self.persist_result = persist_result if persist_result is not None else (True if persist else None)
        if self.cache_key_fn is not None:  # Prefect: the key function becomes the policy
            cache_policy = policy
        if persist_result is False:
            self.cache_policy = None if cache_policy is None else NONE
        elif cache_policy is _NOT_SET and self.result_storage_key is None:
            self.cache_policy = DEFAULT
        elif cache_policy is not NONE and self.result_storage_key:
            self.cache_policy = None
        else:
            self.cache_policy = cache_policy

    def __get__(self, instance: Any, owner: type | None = None) -> Task[P, R]:
        """Used as a method, the task binds `self` (or the class, for a classmethod)
        like the function would; a staticmethod binds nothing."""
        kind = self._method_kind
        if kind == "static" or (instance is None and kind != "class"):
            return self
        target = (owner if owner is not None else type(instance)) if kind == "class" else instance
        bound = copy.copy(self)
        bound.fn = self.fn.__get__(target, owner)
        if self._method_shape is None:
            self._method_shape = CallShape(bound.fn)
        bound._shape = self._method_shape
        return bound

    def on_commit(self, fn: Callable[[Any], None]) -> Callable[[Any], None]:
        """Decorator: run ``fn(transaction)`` when this task's transaction commits."""
        self.on_commit_hooks.append(fn)
        return fn

    def on_rollback(self, fn: Callable[[Any], None]) -> Callable[[Any], None]:
        """Decorator: run ``fn(transaction)`` when the transaction this task's run
        staged into rolls back (see :mod:`flowbus.transactions`)."""
        self.on_rollback_hooks.append(fn)
        return fn

    @property
    def isclassmethod(self) -> bool:
        return self._method_kind == "class"

    @property
    def isstaticmethod(self) -> bool:
        return self._method_kind == "static"

    def with_options(self, **options: Any) -> Task[P, R]:
        """A copy of this task with some options changed.

        Example::

            quick = fetch.with_options(retries=0, timeout_seconds=5)
        """
        unknown = set(options) - set(self._options)
        if unknown:
            raise TypeError(f"Unknown task option(s) {sorted(unknown)}; options: {sorted(self._options)}")
        # The hooks as they are now: some may have been added with the decorator forms.
        hooks = {"on_commit": self.on_commit_hooks, "on_rollback": self.on_rollback_hooks,
                 "on_completion": self.on_completion, "on_failure": self.on_failure,
                 "on_running": self.on_running}
        return Task(rewrap_method(self.fn, self._method_kind), **{**self._options, **hooks, **options})

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the task inline and return its result (a coroutine for an async task).

        ``return_state=True`` returns the final `State` instead; ``wait_for=[...]`` waits
        for upstream runs first.
        """
        options: dict[str, Any] = kwargs
        return_state = bool(options.pop("return_state", False))
        wait_for = options.pop("wait_for", None)
        parameters = self._shape.bind(args, options)
        if _viz_tracker.get() is not None:  # Flow.visualize(): record, do not run
            return self._record_for_viz(parameters)  # type: ignore[no-any-return]
        if self.isasync:
            return _engine.call_task_async(self, parameters, wait_for, return_state)  # type: ignore[return-value]
        return _engine.call_task_sync(self, parameters, wait_for, return_state)  # type: ignore[no-any-return]

    # The future of an async task holds what its coroutine returns, not the coroutine.
    @overload
    def submit(self: Task[P, Coroutine[Any, Any, T]], *args: P.args, **kwargs: P.kwargs) -> FlowbusFuture[T]: ...

    @overload
    def submit(self: Task[P, T], *args: P.args, **kwargs: P.kwargs) -> FlowbusFuture[T]: ...

    def submit(self, *args: Any, **kwargs: Any) -> FlowbusFuture[Any]:
        """Run the task on the flow's task runner; returns a future at once.

        Futures among the arguments are waited for in the run and replaced by their results.
        """
        kwargs.pop("return_state", None)
        wait_for = kwargs.pop("wait_for", None)
        parameters = self._shape.bind(args, kwargs)
        if _viz_tracker.get() is not None:  # Flow.visualize(): record, do not run
            return self._record_for_viz(parameters)  # type: ignore[no-any-return]
        return _engine.submit_task(self, parameters, wait_for)

    # The future of an async task's run holds what its coroutine returns.
    @overload
    def delay(self: Task[P, Coroutine[Any, Any, T]], *args: P.args, **kwargs: P.kwargs) -> TaskRunFuture[T]: ...

    @overload
    def delay(self: Task[P, T], *args: P.args, **kwargs: P.kwargs) -> TaskRunFuture[T]: ...

    def delay(self, *args: Any, **kwargs: Any) -> TaskRunFuture[Any]:
        """Queue a run for a task worker (``flowbus task-worker``); returns a future at once.

        Works from any process connected to the server (``FLOWBUS_NATS_URL``), also
        without a flow around it. Example::

            future = add.delay(1, 2)
            future.result(timeout=30)   # 3, once a worker has run it
        """
        from flowbus.background import submit_background

        return submit_background(self, args, kwargs)

    def apply_async(
        self,
        args: tuple[Any, ...] | None = None,
        kwargs: dict[str, Any] | None = None,
        wait_for: Iterable[Any] | None = None,
        dependencies: dict[str, Any] | None = None,
    ) -> TaskRunFuture[Any]:
        """`delay` with Prefect's shape: ``wait_for`` names upstream background futures
        the run waits for; ``dependencies`` is accepted and has no effect."""
        from flowbus.background import apply_async

        return apply_async(self, args, kwargs, wait_for, dependencies)

    def _record_for_viz(self, parameters: dict[str, Any]) -> Any:
        from flowbus.visualization import track_task_call

        tracker = _viz_tracker.get()
        return track_task_call(tracker, self, parameters) if tracker is not None else None

    @overload
    def map(self: Task[P, Coroutine[Any, Any, T]], *args: Any, **kwargs: Any) -> FutureList[T]: ...

    @overload
    def map(self: Task[P, T], *args: Any, **kwargs: Any) -> FutureList[T]: ...

    def map(self, *args: Any, **kwargs: Any) -> FutureList[Any]:
        """Submit one run per element of the iterable arguments (zipped; equal lengths).

        Wrap an iterable argument in `unmapped(...)` to pass it whole to every run.
        """
        kwargs.pop("return_state", None)
        wait_for = kwargs.pop("wait_for", None)
        parameters = self._shape.bind(args, kwargs)
        calls = mapped_calls(self.name, parameters)
        if _viz_tracker.get() is not None:  # Flow.visualize(): record each call
            return [self._record_for_viz(call) for call in calls]  # type: ignore[return-value]
        return FutureList(_engine.submit_task(self, call, wait_for) for call in calls)

    def __repr__(self) -> str:
        return f"Task(name={self.name!r})"


@overload
def task(fn: Callable[P, R], /) -> Task[P, R]: ...


@overload
def task(
    *,
    name: str | None = None,
    description: str | None = None,
    tags: Iterable[str] | None = None,
    version: str | None = None,
    cache_policy: CachePolicy | None = ...,
    cache_key_fn: Callable[[Any, dict[str, Any]], str | None] | None = None,
    cache_expiration: _dt.timedelta | None = None,
    task_run_name: str | Callable[..., str] | None = None,
    retries: int | None = None,
    retry_delay_seconds: float | list[float] | Callable[[int], list[float]] | None = None,
    retry_jitter_factor: float | None = None,
    retry_condition_fn: Callable[[Any, Any, Any], bool] | None = None,
    persist_result: bool | None = None,
    result_storage: ResultStorage | str | None = None,
    result_storage_key: str | None = None,
    result_serializer: Serializer | str | None = None,
    cache_result_in_memory: bool = True,
    timeout_seconds: float | None = None,
    log_prints: bool | None = None,
    refresh_cache: bool | None = None,
    on_completion: list[Callable[..., Any]] | None = None,
    on_failure: list[Callable[..., Any]] | None = None,
    on_running: list[Callable[..., Any]] | None = None,
    on_commit: list[Callable[..., Any]] | None = None,
    on_rollback: list[Callable[..., Any]] | None = None,
    viz_return_value: Any = None,
    asset_deps: Iterable[Any] | None = None,
) -> Callable[[Callable[P, R]], Task[P, R]]: ...


def task(fn: Any = None, /, **options: Any) -> Any:
    """Make a function a task; bare (``@task``) or with options (``@task(retries=3)``).

    Example::

        @task(cache_policy=INPUTS, cache_expiration=timedelta(hours=1))
        def load(path: str) -> list[str]:
            return open(path).read().splitlines()
    """
    if fn is None:
        return lambda f: Task(f, **options)
    return Task(fn, **options)


__all__ = ["Task", "exponential_backoff", "task", "task_input_hash", "unmapped"]
