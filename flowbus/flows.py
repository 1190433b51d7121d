"""Flows: functions whose calls are tracked as flow runs; the container of task runs.

Example::

    from flowbus import flow, task

    @task
    def add(x: int, y: int) -> int:
        return x + y

    @flow(log_prints=True)
    def total(n: int = 3) -> int:
        result = sum(add(i, i) for i in range(n))
        print(result)              # goes to the flow run's log
        return result
"""

from __future__ import annotations

import copy
import functools
import inspect
from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, overload

from flowbus import _engine, _options_check
from flowbus._hooks import Hooks, alias
from flowbus._params import CallShape, ParameterValidator, rewrap_method
from flowbus._params import unwrap_method as _unwrap_method
from flowbus.results import ResultStorage
from flowbus.serializers import resolve_serializer
from flowbus.task_runners import TaskRunner, ThreadPoolTaskRunner

if TYPE_CHECKING:
    from flowbus.serializers import Serializer
    from flowbus.serving import RunnerDeployment

P = ParamSpec("P")
R = TypeVar("R")


class Flow(Generic[P, R]):
    """A function whose calls are tracked as flow runs. Made by `@flow`."""

    on_completion_hooks = alias("on_completion")
    on_failure_hooks = alias("on_failure")
    on_cancellation_hooks = alias("on_cancellation")
    on_crashed_hooks = alias("on_crashed")
    on_running_hooks = alias("on_running")

    def __init__(
        self,
        fn: Callable[P, R],
        name: str | None = None,
        description: str | None = None,
        version: str | None = None,
        flow_run_name: str | Callable[..., str] | None = None,
        task_runner: TaskRunner | None = None,
        timeout_seconds: float | None = None,
        validate_parameters: bool = True,
        retries: int | None = None,
        retry_delay_seconds: float | list[float] | Callable[[int], list[float]] | None = None,
        persist_result: bool | None = None,
        result_storage: ResultStorage | str | None = None,
        result_serializer: Serializer | str | None = None,
        cache_result_in_memory: bool = True,
        on_completion: list[Callable[..., Any]] | None = None,
        on_failure: list[Callable[..., Any]] | None = None,
        on_cancellation: list[Callable[..., Any]] | None = None,
        on_crashed: list[Callable[..., Any]] | None = None,
        on_running: list[Callable[..., Any]] | None = None,
        log_prints: bool | None = None,
    ) -> None:
        fn, self._method_kind = _unwrap_method(fn)
        if not callable(fn):
            raise TypeError(f"@flow needs a function, got {fn!r}")
        if retries is not None and retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        if timeout_seconds is not None and timeout_seconds < 0:
            raise ValueError(f"timeout_seconds must be >= 0 (0: no timeout), got {timeout_seconds}")
        timeout_seconds = timeout_seconds or None  # 0 unsets it, as in Prefect
        _options_check.check_reserved_arguments(fn)
        self.fn = fn
        functools.update_wrapper(self, fn)  # inspect.signature(obj) is the function's
        self.name = _options_check.flow_name(name, fn)
        self.description = description if description is not None else inspect.getdoc(fn)
        self.version = version
        self.flow_run_name = _options_check.run_name(flow_run_name, "flow_run_name")
        self.task_runner = task_runner if task_runner is not None else ThreadPoolTaskRunner()
        self.timeout_seconds = timeout_seconds
        self.should_validate_parameters = validate_parameters
        self.retries = retries or 0
        self.retry_delay_seconds = retry_delay_seconds if retry_delay_seconds is not None else 0
        self.result_storage = result_storage
        self.result_serializer = result_serializer
        self._serializer = resolve_serializer(result_serializer)
        self.persist_result = bool(
            persist_result
            if persist_result is not None
            else result_storage is not None or result_serializer is not None
        )
        self.cache_result_in_memory = cache_result_in_memory
        self.on_completion = Hooks(on_completion, kind="on_completion")
        self.on_failure = Hooks(on_failure, kind="on_failure")
        self.on_cancellation = Hooks(on_cancellation, kind="on_cancellation")
        self.on_crashed = Hooks(on_crashed, kind="on_crashed")
        self.on_running = Hooks(on_running, kind="on_running")
        self.log_prints = log_prints
        self.isasync = inspect.iscoroutinefunction(fn)
        self._shape = CallShape(fn)
        self._method_shape: CallShape | None = None
        self._validator = ParameterValidator(fn) if validate_parameters else None
        self._options = {
            "name": name, "description": description, "version": version,
            "flow_run_name": flow_run_name, "task_runner": task_runner,
            "timeout_seconds": timeout_seconds, "validate_parameters": validate_parameters,
            "retries": retries, "retry_delay_seconds": retry_delay_seconds,
            "persist_result": persist_result, "result_storage": result_storage,
            "result_serializer": result_serializer, "cache_result_in_memory": cache_result_in_memory,
            "on_completion": on_completion, "on_failure": on_failure,
            "on_cancellation": on_cancellation, "on_crashed": on_crashed,
            "on_running": on_running, "log_prints": log_prints,
        }  # fmt: skip

    def __get__(self, instance: Any, owner: type | None = None) -> Flow[P, R]:
        """Used as a method, the flow binds `self` (or the class, for a classmethod)
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

    @property
    def isclassmethod(self) -> bool:
        return self._method_kind == "class"

    @property
    def isstaticmethod(self) -> bool:
        return self._method_kind == "static"

    def with_options(self, **options: Any) -> Flow[P, R]:
        """A copy of this flow with some options changed.

        Example::

            nightly = etl.with_options(name="etl-nightly", retries=2)
        """
        unknown = set(options) - set(self._options)
        if unknown:
            raise TypeError(f"Unknown flow option(s) {sorted(unknown)}; options: {sorted(self._options)}")
        # The hooks as they are now: some may have been added with the decorator forms.
        hooks = {name: getattr(self, name) for name in
                 ("on_completion", "on_failure", "on_cancellation", "on_crashed", "on_running")}
        return Flow(rewrap_method(self.fn, self._method_kind), **{**self._options, **hooks, **options})

    def validate_parameters(self, parameters: dict[str, Any]) -> dict[str, Any]:
        """`parameters` validated and coerced against the type hints (pydantic).

        Raises `ParameterTypeError` naming each bad parameter.
        """
        validator = self._validator or ParameterValidator(self.fn)
        return validator.validate(self._shape.bind((), dict(parameters)))

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the flow and return its result (a coroutine for an async flow).

        Inside another flow this makes a subflow run. ``return_state=True`` returns
        the final `State` instead of the result or the raised error.
        """
        options: dict[str, Any] = kwargs
        return_state = bool(options.pop("return_state", False))
        wait_for = options.pop("wait_for", None)
        parameters = self._shape.bind(args, options)
        if self.isasync:
            return _engine.call_flow_async(self, parameters, wait_for, return_state)  # type: ignore[return-value]
        return _engine.call_flow_sync(self, parameters, wait_for, return_state)  # type: ignore[no-any-return]

    def serve(
        self,
        name: str | None = None,
        *,
        triggers: Sequence[Any] | None = None,
        cron: str | Iterable[str] | None = None,
        interval: float | timedelta | Sequence[float | timedelta] | None = None,
        schedules: Sequence[Any] | None = None,
        parameters: dict[str, Any] | None = None,
        tags: Iterable[str] | None = None,
        description: str | None = None,
        version: str | None = None,
        concurrency_limit: int | None = None,
        work_pool: str | None = None,
        limit: int | None = None,
        durable_tasks: bool = True,
    ) -> None:
        """Register a deployment of this flow and run it in this process until SIGINT/SIGTERM.

        Needs ``FLOWBUS_NATS_URL``. Runs execute in this process (at most ``limit``
        at once) with this very flow object.

        Example::

            hello.serve("hello", triggers=[{"expect": ["com.example.greet"]}])
        """
        from flowbus.serving import serve

        serve(self.to_deployment(
            name, triggers=triggers, cron=cron, interval=interval, schedules=schedules,
            parameters=parameters, tags=tags, description=description, version=version,
            concurrency_limit=concurrency_limit, work_pool=work_pool, durable_tasks=durable_tasks,
        ), limit=limit)

    def to_deployment(
        self,
        name: str | None = None,
        *,
        triggers: Sequence[Any] | None = None,
        cron: str | Iterable[str] | None = None,
        interval: float | timedelta | Sequence[float | timedelta] | None = None,
        schedules: Sequence[Any] | None = None,
        parameters: dict[str, Any] | None = None,
        tags: Iterable[str] | None = None,
        description: str | None = None,
        version: str | None = None,
        concurrency_limit: int | None = None,
        work_pool: str | None = None,
        durable_tasks: bool = True,
    ) -> RunnerDeployment:
        """A deployment of this flow for `flowbus.serve`, its triggers and schedules validated.

        Example::

            flowbus.serve(etl.to_deployment("etl-nightly", cron="0 3 * * *"))
        """
        from flowbus.serving import to_deployment

        return to_deployment(
            self, name, triggers=triggers, cron=cron, interval=interval, schedules=schedules,
            parameters=parameters, tags=tags, description=description, version=version,
            concurrency_limit=concurrency_limit, work_pool=work_pool, durable_tasks=durable_tasks,
        )

    def deploy(
        self,
        name: str,
        *,
        work_pool_name: str | None = None,
        triggers: list[Any] | None = None,
        schedules: list[Any] | None = None,
        cron: str | None = None,
        interval: float | timedelta | None = None,
        parameters: dict[str, Any] | None = None,
        tags: list[str] | None = None,
        description: str | None = None,
        version: str | None = None,
        entrypoint: str | None = None,
        concurrency_limit: int | None = None,
        bundle: bool = True,
        durable_tasks: bool = True,
    ) -> str:
        """Deploy this flow to runners started separately; returns the deployment's id.

        The entrypoint is this flow's source file relative to the current directory
        and its function name (or ``entrypoint``); the directory is uploaded as a code
        bundle unless ``bundle=False`` (the runners' image has the code). Needs
        ``FLOWBUS_NATS_URL``. ``durable_tasks=False`` turns durable task reuse off
        (docs/sdk.md, "Durable task reuse"). While deploying checks the module in a separate process,
        a ``deploy`` call at its top level does nothing and returns "". See
        docs/deploying.md.
        """
        from flowbus.deploying import deploy_flow

        return deploy_flow(
            self, name, bundle=bundle, entrypoint=entrypoint, work_pool_name=work_pool_name,
            triggers=triggers, schedules=schedules, cron=cron, interval=interval,
            parameters=parameters, tags=tags, description=description,
            version=version if version is not None else self.version,
            concurrency_limit=concurrency_limit, durable_tasks=durable_tasks,
        )

    def generate_mermaid_graph(self, *args: Any, **kwargs: Any) -> str:
        """A Mermaid ``flowchart TD`` of this flow's task calls, found by running the body
        with task calls recorded instead of run (code outside tasks does run)."""
        from flowbus.visualization import trace_flow

        return trace_flow(self, args, kwargs).mermaid()

    async def agenerate_mermaid_graph(self, *args: Any, **kwargs: Any) -> str:
        """`generate_mermaid_graph` for async code."""
        from flowbus.visualization import atrace_flow

        return (await atrace_flow(self, args, kwargs)).mermaid()

    def visualize(self, *args: Any, **kwargs: Any) -> None:
        """Draw this flow's task graph with Graphviz (needs the graphviz package and
        Graphviz's `dot`; `generate_mermaid_graph` needs neither)."""
        from flowbus.visualization import render_graphviz, trace_flow

        render_graphviz(trace_flow(self, args, kwargs), self.name)

    def __repr__(self) -> str:
        return f"Flow(name={self.name!r})"


@overload
def flow(fn: Callable[P, R], /) -> Flow[P, R]: ...


@overload
def flow(
    *,
    name: str | None = None,
    description: str | None = None,
    version: str | None = None,
    flow_run_name: str | Callable[..., str] | None = None,
    task_runner: TaskRunner | None = None,
    timeout_seconds: float | None = None,
    validate_parameters: bool = True,
    retries: int | None = None,
    retry_delay_seconds: float | list[float] | Callable[[int], list[float]] | None = None,
    persist_result: bool | None = None,
    result_storage: ResultStorage | str | None = None,
    result_serializer: Serializer | str | None = None,
    cache_result_in_memory: bool = True,
    on_completion: list[Callable[..., Any]] | None = None,
    on_failure: list[Callable[..., Any]] | None = None,
    on_cancellation: list[Callable[..., Any]] | None = None,
    on_crashed: list[Callable[..., Any]] | None = None,
    on_running: list[Callable[..., Any]] | None = None,
    log_prints: bool | None = None,
) -> Callable[[Callable[P, R]], Flow[P, R]]: ...


def flow(fn: Any = None, /, **options: Any) -> Any:
    """Make a function a flow; bare (``@flow``) or with options (``@flow(retries=1)``).

    Example::

        @flow(name="etl", flow_run_name="etl-{day}", timeout_seconds=600)
        def etl(day: str): ...
    """
    if fn is None:
        return lambda f: Flow(f, **options)
    return Flow(fn, **options)


__all__ = ["Flow", "flow"]
