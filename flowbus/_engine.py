"""The run engine: one state machine for task runs and one for flow runs.

Both are generators (see `flowbus._drivers`): they yield where user code runs or a
retry waits, so the same code drives sync and async runs. Everything a user can
observe, states, events, logs, retries, caching, hooks, lives here once.

Runners call `run_flow` / `run_flow_async` to execute a flow for a given flow-run
record and get its final `State` back.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import random
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from flowbus import _sink
from flowbus._drivers import Call, Sleep, Steps, drive_async, drive_sync
from flowbus._params import random_run_name, render_run_name
from flowbus.cache_policies import CacheContext
from flowbus.context import (
    FlowRun,
    FlowRunContext,
    TaskRun,
    TaskRunContext,
    _flow_run_ctx,
    _task_run_ctx,
    current_tags,
)
from flowbus.exceptions import (
    FlowRunTimeoutError,
    ParameterBindError,
    ParameterTypeError,
    RunInterrupted,
    SerializationError,
    TaskRunTimeoutError,
    UpstreamTaskError,
)
from flowbus.futures import FlowbusFuture, contains_upstream, rebuild, resolve_futures_to_states
from flowbus.logging import (
    _log_prints,
    enable_log_prints,
    flow_run_logger,
    setup_logging,
    task_run_logger,
)
from flowbus.results import (
    decode_cache_record,
    default_cache_store,
    encode_cache_record,
    resolve_result_store,
)
from flowbus.states import (
    AwaitingRetry,
    Cached,
    Cancelled,
    Completed,
    Crashed,
    Failed,
    Pending,
    ResultRef,
    Retrying,
    Running,
    State,
    StateType,
)

_UTC = _dt.UTC


def _now() -> _dt.datetime:
    return _dt.datetime.now(_UTC)


# --------------------------------------------------------------------------- shared


def _set_task_state(task_run: TaskRun, state: State[Any]) -> None:
    task_run.state = state
    if _sink.enabled:
        _sink.emit_state_event("task-run", task_run.id, state.name, task_run.to_dict())


def _set_flow_state(flow_run: FlowRun, state: State[Any]) -> None:
    flow_run.state = state
    if _sink.enabled:
        _sink.emit_state_event("flow-run", flow_run.id, state.name, flow_run.to_dict())


def retry_delay(spec: Any, retry_number: int, retries: int, jitter: float | None) -> float:
    """The delay before retry `retry_number` (1-based).

    `spec` is a number, a list (one delay per retry, the last one repeating), or a
    callable ``(retries) -> list`` such as `exponential_backoff(10)`.
    """
    if callable(spec):
        spec = spec(retries)
    if isinstance(spec, Sequence):
        delay = float(spec[min(retry_number, len(spec)) - 1]) if spec else 0.0
    else:
        delay = float(spec or 0)
    if jitter and delay > 0:
        delay = random.uniform(delay, delay * (1 + jitter))
    return delay


def _interrupted_state(exc: BaseException) -> State[Any]:
    """The final state for a run stopped by something that is not an error of its code."""
    if isinstance(exc, asyncio.CancelledError):
        return Cancelled(message="The run was cancelled.", data=exc)
    if isinstance(exc, RunInterrupted):
        return Crashed(message="The run was interrupted because an enclosing run timed out.")
    return Crashed(message=f"Execution was interrupted by {type(exc).__name__}.", data=exc)


def _hooks(hooks: Iterable[Callable[..., Any]], obj: Any, run: Any, state: State[Any], logger: Any) -> Steps[None]:
    """Run hooks; a hook that fails is logged and never changes the run's state."""
    for hook in hooks:
        name = getattr(hook, "__name__", repr(hook))
        ok, value = yield Call(hook, (obj, run, state), {})
        if ok:
            logger.info("Hook %r finished running successfully", name)
        elif isinstance(value, Exception):
            logger.error("An error was encountered while running hook %r", name, exc_info=value)
        else:
            raise value


def _resolve(value: Any) -> Any:
    if isinstance(value, FlowbusFuture | State):
        state = value.final_state() if isinstance(value, FlowbusFuture) else value
        if not state.is_completed():
            name = value.task_run.name if isinstance(value, FlowbusFuture) else "upstream"
            raise UpstreamTaskError(
                f"Upstream task run {name!r} did not reach a 'COMPLETED' state (it is {state!r})."
            )
        return state.result()
    if not contains_upstream(value):
        return value
    if isinstance(value, dict):
        return {k: _resolve(v) for k, v in value.items()}
    return rebuild(value, [_resolve(v) for v in value])


def resolve_inputs(parameters: dict[str, Any], wait_for: Iterable[Any] | None) -> dict[str, Any]:
    """Parameters with upstream futures/states replaced by their results.

    Raises `UpstreamTaskError` if an upstream run (or one in `wait_for`) did not complete.
    Collections are copied only when they hold a future or a state.
    """
    if wait_for:
        for upstream in wait_for:
            if isinstance(upstream, FlowbusFuture | State):
                _resolve(upstream)
    for value in parameters.values():
        if contains_upstream(value):
            return {k: _resolve(v) for k, v in parameters.items()}
    return parameters


def _persist(owner: Any, value: Any, key: str, cache_key: str | None) -> State[Any]:
    """A Completed state for `value`, written to the result store (and cache) first."""
    serializer = owner._serializer
    payload = serializer.dumps(value)
    store = resolve_result_store(owner.result_storage)
    store.write(key, payload)
    if cache_key is not None:
        expiration = getattr(owner, "cache_expiration", None)
        expires = _now() + expiration if expiration is not None else None
        default_cache_store().write(cache_key, encode_cache_record(serializer, payload, expires))
    data = value if owner.cache_result_in_memory else ResultRef(store, key, serializer)
    return Completed(data=data)


def _cache_lookup(cache_key: str) -> tuple[bool, Any]:
    record = default_cache_store().read(cache_key)
    if record is None:
        return False, None
    decoded = decode_cache_record(record)
    if decoded is None:
        return False, None
    serializer, payload = decoded
    return True, serializer.loads(payload)


# ------------------------------------------------------------------------- task runs


def new_task_run(task: Any, parameters: dict[str, Any]) -> TaskRun:
    flow_ctx = _flow_run_ctx.get()
    run_id = str(uuid.uuid4())
    extra = current_tags()
    return TaskRun(
        id=run_id,
        name=f"{task.name}-{run_id[:3]}",
        task_name=task.name,
        task_key=task.task_key,
        parameters=parameters,
        tags=task._tags + tuple(t for t in extra if t not in task._tags) if extra else task._tags,
        state=_PENDING_PLACEHOLDER,
        flow_run_id=flow_ctx.flow_run.id if flow_ctx is not None else None,
    )


_PENDING_PLACEHOLDER: State[Any] = Pending()


def task_run_steps(
    task: Any,
    task_run: TaskRun,
    parameters: dict[str, Any],
    wait_for: Iterable[Any] | None,
    flow_parameters: dict[str, Any] | None = None,
) -> Steps[State[Any]]:
    """The life of one task run, from Pending to its final state."""
    flow_ctx = _flow_run_ctx.get()
    log_prints = task.log_prints if task.log_prints is not None else _log_prints.get()
    task_ctx = TaskRunContext(task, task_run, parameters, log_prints, flow_ctx)
    token = _task_run_ctx.set(task_ctx)
    prints_token = _log_prints.set(log_prints) if task.log_prints is not None else None
    if log_prints:
        enable_log_prints()
    try:
        final, reraise = yield from _task_attempts(task, task_run, task_ctx, wait_for, flow_ctx, flow_parameters)
        _set_task_state(task_run, final)
        logger = task_run_logger(task_run)
        if final.is_failed() or final.is_crashed():
            logger.error("Finished in state %r", final)
        else:
            logger.info("Finished in state %r", final)
        if final.type is StateType.COMPLETED and task.on_completion:
            yield from _hooks(task.on_completion, task, task_run, final, logger)
        elif final.type is StateType.FAILED and task.on_failure:
            yield from _hooks(task.on_failure, task, task_run, final, logger)
        if reraise is not None:
            raise reraise
        return final
    finally:
        if prints_token is not None:
            _log_prints.reset(prints_token)
        _task_run_ctx.reset(token)


def _task_attempts(
    task: Any,
    task_run: TaskRun,
    task_ctx: TaskRunContext,
    wait_for: Iterable[Any] | None,
    flow_ctx: FlowRunContext | None,
    flow_parameters: dict[str, Any] | None,
) -> Steps[tuple[State[Any], BaseException | None]]:
    try:
        if task.task_run_name is not None:
            task_run.name = render_run_name(task.task_run_name, task_run.parameters, "task_run_name")
        _set_task_state(task_run, Pending())
        parameters = resolve_inputs(task_run.parameters, wait_for)
    except UpstreamTaskError as exc:
        _set_task_state(task_run, Pending())
        return Failed(name="NotReady", message=str(exc), data=exc), None
    except (ParameterBindError, TypeError) as exc:
        return Failed(message=str(exc), data=exc), None
    task_ctx.parameters = parameters

    cache_key, cached = _check_cache(task, task_run, parameters, flow_ctx, flow_parameters)
    if cached is not None:
        return cached, None

    args, kwargs = task._shape.to_call(parameters)
    while True:
        task_run.run_count += 1
        _set_task_state(task_run, Running() if task_run.run_count == 1 else Retrying())
        ok, value = yield Call(task.fn, args, kwargs, task.timeout_seconds, TaskRunTimeoutError)
        if ok:
            return _task_result_state(task, task_run, value, parameters, cache_key), None
        if not isinstance(value, Exception):
            return _interrupted_state(value), value
        failed = Failed(message=f"Task run encountered an exception {type(value).__name__}: {value}", data=value)
        logger = task_run_logger(task_run)
        if task_run.run_count <= task.retries and _should_retry(task, task_run, failed, logger):
            delay = retry_delay(task.retry_delay_seconds, task_run.run_count, task.retries, task.retry_jitter_factor)
            logger.warning(
                "Task run failed with exception: %r - Retry %d/%d will start %s",
                value,
                task_run.run_count,
                task.retries,
                f"in {delay:g} second(s)" if delay else "immediately",
            )
            _set_task_state(task_run, AwaitingRetry(message=str(value)))
            if delay > 0:
                ok, error = yield Sleep(delay)
                if not ok:
                    return _interrupted_state(error), error
            continue
        logger.error("Task run failed with exception: %r", value, exc_info=value)
        return failed, None


def _check_cache(
    task: Any,
    task_run: TaskRun,
    parameters: dict[str, Any],
    flow_ctx: FlowRunContext | None,
    flow_parameters: dict[str, Any] | None,
) -> tuple[str | None, State[Any] | None]:
    """The run's cache key, and a Cached state when the cache holds a live entry for it."""
    policy = task._cache_policy
    if policy is None:
        return None, None
    if flow_parameters is None:
        flow_parameters = flow_ctx.parameters if flow_ctx else {}
    context = CacheContext(task, task_run, flow_parameters, task_run.flow_run_id)
    try:
        cache_key = policy.compute_key(context, parameters)
    except Exception as exc:
        task_run_logger(task_run).warning("Not caching this run: cache key failed: %s", exc)
        return None, None
    task_run.cache_key = cache_key
    if cache_key is None or task.refresh_cache:
        return cache_key, None
    try:
        hit, value = _cache_lookup(cache_key)
    except Exception as exc:  # an unreadable record is a miss, not a failure
        task_run_logger(task_run).warning("Ignoring unreadable cache record: %s", exc)
        return cache_key, None
    return cache_key, Cached(data=value) if hit else None


def _task_result_state(
    task: Any, task_run: TaskRun, value: Any, parameters: dict[str, Any], cache_key: str | None
) -> State[Any]:
    """The final state of a body that returned `value` (persisted and cached if asked)."""
    if isinstance(value, State):
        return value
    if not task._persist:
        return Completed(data=value)
    try:
        key = (
            render_run_name(task.result_storage_key, parameters, "result_storage_key")
            if task.result_storage_key
            else cache_key or task_run.id
        )
        return _persist(task, value, key, cache_key)
    except SerializationError as exc:
        return Failed(message=str(exc), data=exc)


def _should_retry(task: Any, task_run: TaskRun, state: State[Any], logger: Any) -> bool:
    if task.retry_condition_fn is None:
        return True
    try:
        return bool(task.retry_condition_fn(task, task_run, state))
    except Exception as exc:
        logger.error("retry_condition_fn raised %r; not retrying", exc)
        return False


class TaskJob:
    """A submitted task run, as handed to a task runner."""

    __slots__ = ("parameters", "task", "task_run", "wait_for")

    def __init__(self, task: Any, task_run: TaskRun, parameters: dict[str, Any], wait_for: Any) -> None:
        self.task = task
        self.task_run = task_run
        self.parameters = parameters
        self.wait_for = wait_for

    def __call__(self) -> State[Any]:
        return drive_sync(task_run_steps(self.task, self.task_run, self.parameters, self.wait_for))

    def for_process(self) -> tuple[Any, ...] | State[Any]:
        try:
            parameters = resolve_inputs(self.parameters, self.wait_for)
        except UpstreamTaskError as exc:
            state: State[Any] = Failed(name="NotReady", message=str(exc), data=exc)
            _set_task_state(self.task_run, state)
            return state
        flow_ctx = _flow_run_ctx.get()
        return (
            _run_task_in_process,
            self.task,
            self.task_run,
            parameters,
            flow_ctx.parameters if flow_ctx else {},
            _log_prints.get(),
        )


def _run_task_in_process(
    task: Any, task_run: TaskRun, parameters: dict[str, Any], flow_parameters: dict[str, Any], log_prints: bool
) -> State[Any]:
    setup_logging()
    _sink.configure_from_env()
    _log_prints.set(log_prints)
    try:
        return drive_sync(task_run_steps(task, task_run, parameters, None, flow_parameters))
    finally:
        _sink.flush_event_sink()


# ------------------------------------------------------------------------- flow runs


def new_flow_run(
    flow: Any,
    parameters: dict[str, Any],
    *,
    flow_run_id: str | None = None,
    flow_run_name: str | None = None,
    deployment_id: str | None = None,
    deployment_name: str | None = None,
    tags: Iterable[str] = (),
) -> FlowRun:
    parent = _flow_run_ctx.get()
    task_parent = _task_run_ctx.get()
    all_tags = tuple(dict.fromkeys((*current_tags(), *tags)))
    return FlowRun(
        id=flow_run_id or str(uuid.uuid4()),
        name=flow_run_name or "",
        flow_name=flow.name,
        parameters=parameters,
        tags=all_tags,
        state=_PENDING_PLACEHOLDER,
        deployment_id=deployment_id,
        deployment_name=deployment_name,
        parent_flow_run_id=parent.flow_run.id if parent else None,
        parent_task_run_id=task_parent.task_run.id if task_parent else None,
    )


def flow_run_steps(flow: Any, flow_run: FlowRun, wait_for: Iterable[Any] | None = None) -> Steps[State[Any]]:
    """The life of one flow run, from Pending to its final state."""
    setup_logging()
    _sink.configure_from_env()
    is_top_level = _flow_run_ctx.get() is None
    log_prints = flow.log_prints if flow.log_prints is not None else _log_prints.get()
    ctx = FlowRunContext(flow, flow_run, None, flow_run.parameters, log_prints)
    token = _flow_run_ctx.set(ctx)
    task_token = _task_run_ctx.set(None)  # a subflow called from a task is not in that task
    prints_token = _log_prints.set(log_prints)
    if log_prints:
        enable_log_prints()
    logger = flow_run_logger(flow_run)
    try:
        final, reraise = yield from _flow_attempts(flow, flow_run, ctx, wait_for, logger)
        logger = flow_run_logger(flow_run)  # the run may have been named meanwhile
        flow_run.end_time = _now()
        _set_flow_state(flow_run, final)
        if final.is_failed() or final.is_crashed():
            logger.error("Finished in state %r", final)
        else:
            logger.info("Finished in state %r", final)
        hooks = {
            StateType.COMPLETED: flow.on_completion,
            StateType.FAILED: flow.on_failure,
            StateType.CRASHED: flow.on_crashed,
            StateType.CANCELLED: flow.on_cancellation,
        }.get(final.type)
        if hooks:
            yield from _hooks(hooks, flow, flow_run, final, logger)
        if reraise is not None:
            raise reraise
        return final
    finally:
        _log_prints.reset(prints_token)
        _task_run_ctx.reset(task_token)
        _flow_run_ctx.reset(token)
        if is_top_level:
            _sink.flush_event_sink()


def _flow_attempts(
    flow: Any, flow_run: FlowRun, ctx: FlowRunContext, wait_for: Iterable[Any] | None, logger: Any
) -> Steps[tuple[State[Any], BaseException | None]]:
    try:
        if not flow_run.name:
            flow_run.name = (
                render_run_name(flow.flow_run_name, flow_run.parameters, "flow_run_name")
                if flow.flow_run_name is not None
                else random_run_name()
            )
            logger = flow_run_logger(flow_run)
        _set_flow_state(flow_run, Pending())
        logger.info("Beginning flow run %r for flow %r", flow_run.name, flow.name)
        parameters = resolve_inputs(flow_run.parameters, wait_for)
        if flow._validator is not None:
            parameters = flow._validator.validate(parameters)
    except (ParameterTypeError, ParameterBindError, UpstreamTaskError) as exc:
        logger.error("%s", exc)
        return Failed(message=str(exc), data=exc), None
    flow_run.parameters = ctx.parameters = parameters
    args, kwargs = flow._shape.to_call(parameters)
    runner = ctx.task_runner = flow.task_runner.duplicate()
    flow_run.start_time = _now()
    while True:
        flow_run.run_count += 1
        _set_flow_state(flow_run, Running() if flow_run.run_count == 1 else Retrying())
        if flow_run.run_count == 1 and flow.on_running:
            yield from _hooks(flow.on_running, flow, flow_run, flow_run.state, logger)
        runner.__enter__()
        ok, value = yield Call(flow.fn, args, kwargs, flow.timeout_seconds, FlowRunTimeoutError)
        try:
            if ok:
                final = _state_from_return(flow, flow_run, value)
        finally:
            runner.__exit__(None if ok else type(value), None if ok else value, None)
        if not ok:
            if not isinstance(value, Exception):
                return _interrupted_state(value), value
            logger.error("Encountered exception during execution: %r", value, exc_info=value)
            final = Failed(message=f"Flow run encountered an exception: {type(value).__name__}: {value}", data=value)
        if final.is_failed() and flow_run.run_count <= flow.retries:
            delay = retry_delay(flow.retry_delay_seconds, flow_run.run_count, flow.retries, None)
            logger.warning("Retry %d/%d will start %s", flow_run.run_count, flow.retries,
                           f"in {delay:g} second(s)" if delay else "immediately")
            _set_flow_state(flow_run, AwaitingRetry(message=final.message))
            if delay > 0:
                ok, error = yield Sleep(delay)
                if not ok:
                    return _interrupted_state(error), error
            continue
        return final, None


def _state_from_return(flow: Any, flow_run: FlowRun, value: Any) -> State[Any]:
    """The flow's final state from what its body returned.

    A returned State is the final state. Returned futures are waited for; if any of the
    returned futures or states failed, the flow fails; otherwise the result is the
    returned value with futures and states replaced by their results.
    """
    if isinstance(value, State):
        return value
    resolved = resolve_futures_to_states(value)
    if isinstance(resolved, State):
        return resolved
    if isinstance(resolved, list | tuple | set | dict):
        items = resolved.values() if isinstance(resolved, dict) else resolved
        states = [s for s in items if isinstance(s, State)]
        if states:
            failed = [s for s in states if s.is_final() and not s.is_completed()]
            if failed:
                return Failed(
                    message=f"{len(failed)}/{len(states)} states failed.", data=failed[0]._exception()
                )
            value = _results_of(resolved)
    if flow.persist_result:
        try:
            return _persist(flow, value, f"flow-runs/{flow_run.id}", None)
        except SerializationError as exc:
            return Failed(message=str(exc), data=exc)
    return Completed(data=value)


def _results_of(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: v.result() if isinstance(v, State) else v for k, v in value.items()}
    return rebuild(value, [v.result() if isinstance(v, State) else v for v in value])


# ---------------------------------------------------------------------- entry points


def run_flow(
    flow: Any,
    parameters: dict[str, Any] | None = None,
    *,
    flow_run_id: str | None = None,
    flow_run_name: str | None = None,
    deployment_id: str | None = None,
    deployment_name: str | None = None,
    tags: Iterable[str] = (),
    return_state: bool = True,
    wait_for: Iterable[Any] | None = None,
) -> Any:
    """Run `flow` for one flow-run record, in this thread, and return its final `State`.

    This is the entry point for runners: the flow run's id, name and deployment come
    from the caller; state and log events go to the event sink. Works for sync and
    async flows (an async body runs on flowbus's background event loop). With
    ``return_state=False`` it returns the result or raises the run's error instead.

    Example::

        state = run_flow(my_flow, {"x": 1}, flow_run_id=record_id, deployment_id=dep_id)
        assert state.is_completed()
    """
    parameters = flow._shape.bind((), dict(parameters or {}))
    flow_run = new_flow_run(
        flow,
        parameters,
        flow_run_id=flow_run_id,
        flow_run_name=flow_run_name,
        deployment_id=deployment_id,
        deployment_name=deployment_name,
        tags=tags,
    )
    state = drive_sync(flow_run_steps(flow, flow_run, wait_for))
    return state if return_state else state.result()


async def run_flow_async(
    flow: Any,
    parameters: dict[str, Any] | None = None,
    *,
    flow_run_id: str | None = None,
    flow_run_name: str | None = None,
    deployment_id: str | None = None,
    deployment_name: str | None = None,
    tags: Iterable[str] = (),
    return_state: bool = True,
    wait_for: Iterable[Any] | None = None,
) -> Any:
    """The async twin of `run_flow` (same engine).

    An async flow runs in the calling event loop; a sync flow runs in a worker thread
    so it does not block the loop.
    """
    if not flow.isasync:
        return await asyncio.to_thread(
            run_flow,
            flow,
            parameters,
            flow_run_id=flow_run_id,
            flow_run_name=flow_run_name,
            deployment_id=deployment_id,
            deployment_name=deployment_name,
            tags=tags,
            return_state=return_state,
            wait_for=wait_for,
        )
    parameters = flow._shape.bind((), dict(parameters or {}))
    flow_run = new_flow_run(
        flow,
        parameters,
        flow_run_id=flow_run_id,
        flow_run_name=flow_run_name,
        deployment_id=deployment_id,
        deployment_name=deployment_name,
        tags=tags,
    )
    state = await drive_async(flow_run_steps(flow, flow_run, wait_for))
    return state if return_state else state.result()


def call_flow_sync(flow: Any, parameters: dict[str, Any], wait_for: Any, return_state: bool) -> Any:
    flow_run = new_flow_run(flow, parameters)
    state = drive_sync(flow_run_steps(flow, flow_run, wait_for))
    return state if return_state else state.result()


async def call_flow_async(flow: Any, parameters: dict[str, Any], wait_for: Any, return_state: bool) -> Any:
    flow_run = new_flow_run(flow, parameters)
    state = await drive_async(flow_run_steps(flow, flow_run, wait_for))
    return state if return_state else state.result()


def call_task_sync(task: Any, parameters: dict[str, Any], wait_for: Any, return_state: bool) -> Any:
    task_run = new_task_run(task, parameters)
    state = drive_sync(task_run_steps(task, task_run, parameters, wait_for))
    return state if return_state else state.result()


async def call_task_async(task: Any, parameters: dict[str, Any], wait_for: Any, return_state: bool) -> Any:
    task_run = new_task_run(task, parameters)
    state = await drive_async(task_run_steps(task, task_run, parameters, wait_for))
    return state if return_state else state.result()


_default_runner: Any = None


def submit_task(task: Any, parameters: dict[str, Any], wait_for: Any) -> FlowbusFuture[Any]:
    """Hand a task run to the current flow run's task runner (or a shared one outside flows)."""
    global _default_runner
    flow_ctx = _flow_run_ctx.get()
    if flow_ctx is not None and flow_ctx.task_runner is not None:
        runner = flow_ctx.task_runner
    else:
        if _default_runner is None:
            from flowbus.task_runners import ThreadPoolTaskRunner

            _default_runner = ThreadPoolTaskRunner()
        runner = _default_runner
    task_run = new_task_run(task, parameters)
    return runner.submit(TaskJob(task, task_run, parameters, wait_for))  # type: ignore[no-any-return]
