"""The task-run state machine:
Pending -> (Cached | [AwaitingConcurrencySlot ->] Running -> [AwaitingRetry -> Retrying]*) -> final.

A generator (see `flowbus._drivers`) that yields where the task body runs or a retry
waits, so the same code drives sync and async task runs.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterable
from types import GeneratorType
from typing import Any

from flowbus import _asset_hooks, _durable, _sink
from flowbus._cache_lock import acquire as acquire_cache_lock
from flowbus._drivers import Blocking, Call, Sleep, Steps, drive_sync
from flowbus._params import render_run_name
from flowbus._run_support import (
    PENDING_PLACEHOLDER,
    cache_lookup,
    interrupted_state,
    persist_result,
    resolve_inputs,
    retry_delay,
    run_hooks,
    set_task_state,
)
from flowbus._state_rules import state_for_return_value
from flowbus._task_txn import close_task_transaction, held_by, open_task_transaction
from flowbus.cache_policies import CacheContext, isolation_level
from flowbus.concurrency._slots import Held, task_tag_slot_waiter
from flowbus.context import (
    FlowRunContext,
    TaskRun,
    TaskRunContext,
    _flow_run_ctx,
    _tags,
    _task_run_ctx,
    current_tags,
)
from flowbus.exceptions import (
    ParameterBindError,
    TaskRunTimeoutError,
    UpstreamTaskError,
)
from flowbus.logging import (
    _log_prints,
    enable_log_prints,
    setup_logging,
    task_run_logger,
)
from flowbus.states import (
    AwaitingConcurrencySlot,
    AwaitingRetry,
    Cached,
    Completed,
    Failed,
    Pending,
    Retrying,
    Running,
    State,
    StateType,
    is_state_iterable,
)


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
        state=PENDING_PLACEHOLDER,
        flow_run_id=flow_ctx.flow_run.id if flow_ctx is not None else None,
        dynamic_key=_durable.next_dynamic_key(flow_ctx, task),
    )



def task_run_steps(
    task: Any,
    task_run: TaskRun,
    parameters: dict[str, Any],
    wait_for: Iterable[Any] | None,
    flow_parameters: dict[str, Any] | None = None,
) -> Steps[State[Any]]:
    """The life of one task run, from Pending to its final state."""
    flow_ctx = _flow_run_ctx.get()
    if flow_ctx is None:
        setup_logging()  # a task called outside any flow prints its logs, as Prefect's does
    log_prints = task.log_prints if task.log_prints is not None else _log_prints.get()
    task_ctx = TaskRunContext(task, task_run, parameters, log_prints, flow_ctx)
    token = _task_run_ctx.set(task_ctx)
    prints_token = _log_prints.set(log_prints) if task.log_prints is not None else None
    if log_prints:
        enable_log_prints()
    assets = assets_token = None
    txn = open_task_transaction(task)
    try:
        assets, assets_token = _asset_hooks.enter(task, task_run, wait_for, flow_ctx)
        reused = _durable.reused_state(task_run)
        if reused is not None:
            set_task_state(task_run, Pending())
            final, reraise = reused, None
        else:
            final, reraise = yield from _task_attempts(task, task_run, task_ctx, wait_for, flow_ctx, flow_parameters)
        set_task_state(task_run, final)
        if assets is not None:
            _asset_hooks.finish(assets, assets_token, task_run, final, flow_ctx)
            assets = assets_token = None
        if txn is not None:
            closing, txn = txn, None
            close_task_transaction(closing, task, task_run, final)
        logger = task_run_logger(task_run)
        if final.is_failed() or final.is_crashed():
            logger.error("Finished in state %r", final)
        else:
            logger.info("Finished in state %r", final)
        if final.type is StateType.COMPLETED and task.on_completion:
            yield from run_hooks(task.on_completion, task, task_run, final, logger)
        elif final.type is StateType.FAILED and task.on_failure:
            yield from run_hooks(task.on_failure, task, task_run, final, logger)
        if reraise is not None:
            raise reraise
        return final
    finally:
        if assets_token is not None:
            _asset_hooks.current.reset(assets_token)
        if txn is not None:  # the run was interrupted: leave its transaction unstaged
            close_task_transaction(txn, task, task_run, None)
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
    except Exception as exc:  # a name template or callable that fails fails the run
        set_task_state(task_run, Pending())
        return Failed(message=str(exc), data=exc), None
    set_task_state(task_run, Pending())
    parameters, not_run = _resolved_inputs(task, task_run, wait_for)
    if not_run is not None:
        return not_run, None
    task_ctx.parameters = parameters

    tag_slots = None
    lock = yield from _serializable_lock(task, task_run, parameters, flow_ctx, flow_parameters)
    try:
        cache_key, cached = _check_cache(task, task_run, parameters, flow_ctx, flow_parameters)
        if cached is not None:
            return cached, None
        # No tags, no work: the SDK's fast path does not reach the tag limits at all.
        tag_slots, interruption = (yield from _wait_for_tag_slots(task_run)) if task_run.tags else _NO_SLOTS
        if interruption is not None:
            return interrupted_state(interruption), interruption
        args, kwargs = task._shape.to_call(parameters)
        while True:
            task_run.run_count += 1
            task_run.returned = None
            set_task_state(task_run, Running() if task_run.run_count == 1 else Retrying())
            if task.on_running:
                yield from run_hooks(task.on_running, task, task_run, task_run.state,
                                     task_run_logger(task_run))
            ok, value = yield Call(task.fn, args, kwargs, task.timeout_seconds, TaskRunTimeoutError)
            if not ok and not isinstance(value, Exception):
                return interrupted_state(value), value
            final, failed = _attempt_state(task, task_run, ok, value, parameters, cache_key)
            if not failed:
                return final, None
            error: Any = value if ok and isinstance(value, State) else (final.data if ok else value)
            delay = _plan_retry(task, task_run, final, error)
            if delay is None:
                return final, None
            if delay > 0:
                ok, interruption = yield Sleep(delay)
                if not ok:
                    return interrupted_state(interruption), interruption
    finally:
        if tag_slots is not None:
            tag_slots.release()
        if lock is not None:
            lock.release()


_NO_SLOTS: tuple[Held | None, BaseException | None] = (None, None)


def _resolved_inputs(
    task: Any, task_run: TaskRun, wait_for: Iterable[Any] | None
) -> tuple[dict[str, Any], State[Any] | None]:
    """The run's parameters with upstream results in, or the state it ends in unrun: an
    upstream that did not complete (NotReady), or its own future among its upstreams."""
    wait_for = list(wait_for) if wait_for else None  # once: the caller may still append to its list
    if _depends_on_itself(task_run, wait_for):  # it would wait for itself forever
        error = ValueError("Discovered a task depending on itself. Raising to avoid a deadlock. Please "
                           f"inspect the inputs and dependencies of {task.name}.")  # fmt: skip
        return {}, Failed(message=str(error), data=error)
    try:
        return resolve_inputs(task_run.parameters, wait_for), None
    except UpstreamTaskError as exc:
        return {}, Failed(name="NotReady", message=str(exc), data=exc)


def _depends_on_itself(task_run: TaskRun, wait_for: Iterable[Any] | None) -> bool:
    """Whether the run's own future is among its upstreams (in ``wait_for``, or a
    parameter or an item of a list/tuple/set parameter), e.g. a ``wait_for`` list the
    caller appended the future to after submitting it."""
    from flowbus.futures import FlowbusFuture

    upstream: list[Any] = list(wait_for or ())
    for value in task_run.parameters.values():
        upstream.extend(value if isinstance(value, list | tuple | set) else (value,))
    return any(isinstance(u, FlowbusFuture) and u.task_run.id == task_run.id for u in upstream)


def _wait_for_tag_slots(task_run: TaskRun) -> Steps[tuple[Held | None, BaseException | None]]:
    """Hold a slot of every tag limit of the run (None: no limit applies), or the
    interruption that stopped the wait.

    While a limit is full the run is ``AwaitingConcurrencySlot`` and the wait is the
    driver's ``Sleep``, so an async task run does not block its event loop.
    """
    waiter = task_tag_slot_waiter(task_run.tags)
    if waiter is None:
        return None, None
    try:
        while (held := waiter.try_take()) is None:
            if not waiter.waiting:
                from events.concurrency import TASK_TAG_PREFIX

                limited = ", ".join(name.removeprefix(TASK_TAG_PREFIX) for name in waiter.names)
                set_task_state(task_run, AwaitingConcurrencySlot(
                    message=f"Concurrency limit reached for tags: {limited}"))
            ok, interruption = yield Sleep(waiter.next_delay())
            if not ok:
                return None, interruption
        return held, None
    finally:
        waiter.close()


def _attempt_state(
    task: Any, task_run: TaskRun, ok: bool, value: Any, parameters: dict[str, Any], cache_key: str | None
) -> tuple[State[Any], bool]:
    """The state one attempt ended in, and whether it failed (a retry may follow)."""
    if isinstance(value, TaskRunTimeoutError) and not ok:  # Prefect's message; the state stays "Failed"
        return Failed(data=value, message=f"Task run exceeded timeout of {task.timeout_seconds} second(s)"), True
    if not ok:
        return Failed(message=f"Task run encountered an exception {type(value).__name__}: {value}", data=value), True
    final = _task_result_state(task, task_run, value, parameters, cache_key)
    return final, final.is_failed()


def _serializable_lock(task: Any, *run: Any) -> Steps[Any]:
    """`_lock_cache_key` (``run``: its other arguments) as an engine step: the held lock
    of the run's cache key under SERIALIZABLE isolation, else None.

    Waiting for it must not stop an event loop whose other runs may hold it (async
    runs gathered on one loop): the driver waits off the loop (`Blocking`).
    """
    if task._cache_policy is None or isolation_level(task._cache_policy) != "SERIALIZABLE":
        return None
    ok, lock = yield Blocking(_lock_cache_key, task, *run)
    if not ok:
        raise lock
    return lock


def _lock_cache_key(
    task: Any,
    task_run: TaskRun,
    parameters: dict[str, Any],
    flow_ctx: FlowRunContext | None,
    flow_parameters: dict[str, Any] | None,
) -> Any:
    """With SERIALIZABLE isolation, the held lock of the run's cache key (else None).

    It is held from the cache read to the cache write: one body per key at a time.
    """
    if isolation_level(task._cache_policy) != "SERIALIZABLE":
        return None
    key = _cache_key(task, task_run, parameters, flow_ctx, flow_parameters)
    if key is None:
        return None
    manager = getattr(task._cache_policy, "lock_manager", None)
    if manager is None:
        return acquire_cache_lock(key)
    if not all(callable(getattr(manager, m, None)) for m in ("acquire_lock", "release_lock")):
        raise TypeError(f"the cache policy's lock_manager {manager!r} has no acquire_lock/release_lock "
                        "(see flowbus.locking)")
    return held_by(manager, key, task_run.id)


def _plan_retry(task: Any, task_run: TaskRun, final: State[Any], error: Any) -> float | None:
    """The delay before the next attempt (AwaitingRetry is set), or None: the run fails.

    ``error`` is the exception the body raised, or the failed state it returned.
    """
    logger = task_run_logger(task_run)
    if task_run.run_count <= task.retries and _should_retry(task, task_run, final, logger):
        delay = retry_delay(task.retry_delay_seconds, task_run.run_count, task.retries, task.retry_jitter_factor)
        logger.warning(
            "Task run failed with %s: %r - Retry %d/%d will start %s",
            "state" if isinstance(error, State) else "exception",
            error,
            task_run.run_count,
            task.retries,
            f"in {delay:g} second(s)" if delay else "immediately",
        )
        set_task_state(task_run, AwaitingRetry(message=final.message or str(error)))
        return delay
    if isinstance(error, Exception):
        logger.error("Task run failed with exception: %r", error, exc_info=error)
    return None


def _check_cache(
    task: Any,
    task_run: TaskRun,
    parameters: dict[str, Any],
    flow_ctx: FlowRunContext | None,
    flow_parameters: dict[str, Any] | None,
) -> tuple[str | None, State[Any] | None]:
    """The run's cache key, and a Cached state when the cache holds a live entry for it."""
    if task._cache_policy is None:
        return None, None
    cache_key = _cache_key(task, task_run, parameters, flow_ctx, flow_parameters)
    task_run.cache_key = cache_key
    if cache_key is None or task.refresh_cache:
        return cache_key, None
    try:
        hit, value = cache_lookup(cache_key, task._cache_policy)
    except Exception as exc:  # an unreadable record is a miss, not a failure
        task_run_logger(task_run).warning("Ignoring unreadable cache record: %s", exc)
        return cache_key, None
    return cache_key, Cached(data=value) if hit else None


def _cache_key(
    task: Any,
    task_run: TaskRun,
    parameters: dict[str, Any],
    flow_ctx: FlowRunContext | None,
    flow_parameters: dict[str, Any] | None,
) -> str | None:
    if task_run.cache_key is not None:
        return str(task_run.cache_key)
    if flow_parameters is None:
        flow_parameters = flow_ctx.parameters if flow_ctx else {}
    context = CacheContext(task, task_run, flow_parameters, task_run.flow_run_id)
    try:
        key = task._cache_policy.compute_key(context, parameters, flow_parameters)
    except Exception as exc:
        task_run_logger(task_run).warning("Not caching this run: cache key failed: %s", exc)
        return None
    return None if key is None else str(key)


def _task_result_state(
    task: Any, task_run: TaskRun, value: Any, parameters: dict[str, Any], cache_key: str | None
) -> State[Any]:
    """The final state of a body that returned `value` (persisted and cached if asked).

    A returned state, or list/set/tuple of states, decides the state as in
    `state_for_return_value`; a returned generator is consumed into a list.
    """
    if isinstance(value, GeneratorType):
        value = list(value)
    task_run.returned = (value,)
    if isinstance(value, State) or is_state_iterable(value):
        return state_for_return_value(value)
    _durable.remember(task, task_run, value)
    if not task._persist:
        return Completed(data=value)
    try:
        key = (
            format_storage_key(task.result_storage_key, parameters)
            if task.result_storage_key
            else cache_key or task_run.id
        )
        return persist_result(task, value, key, cache_key)
    except Exception as exc:  # unserializable, or the store refused it: the run fails
        task_run.returned = None
        return Failed(message=str(exc), data=exc)


def format_storage_key(template: str, parameters: dict[str, Any]) -> str:
    """A `result_storage_key` template filled in as Prefect does: ``{parameters[x]}``,
    ``{flow_run.id}``, ``{task_run.name}``, ``{deployment.name}``, and the runtime
    through the package, ``{flowbus.runtime.flow_run.flow_version}`` (``prefect.`` too);
    as before, a bare ``{x}`` for parameter `x`."""
    import flowbus
    from flowbus import runtime

    fields = {**parameters, "parameters": parameters, "flow_run": runtime.flow_run,
              "task_run": runtime.task_run, "deployment": runtime.deployment,
              "flowbus": flowbus, "prefect": flowbus}  # fmt: skip
    try:
        return template.format(**fields)
    except (KeyError, IndexError, AttributeError) as exc:
        raise ParameterBindError(
            f"result_storage_key {template!r} refers to {exc}, which is neither a parameter "
            f"(parameters: {sorted(parameters)}) nor parameters[...], flow_run, task_run, deployment "
            "or flowbus.runtime"
        ) from None


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
        flow_ctx = _flow_run_ctx.get()
        upstream_assets = _asset_hooks.for_process(self.task, self.task_run, self.wait_for, flow_ctx)
        try:
            parameters = resolve_inputs(self.parameters, self.wait_for)
        except UpstreamTaskError as exc:
            state: State[Any] = Failed(name="NotReady", message=str(exc), data=exc)
            set_task_state(self.task_run, state)
            return state
        # The record travels with the resolved inputs: the futures it was given hold
        # locks and cannot be pickled (Prefect resolves them before pickling too).
        return (
            _run_task_in_process,
            self.task,
            dataclasses.replace(self.task_run, parameters=parameters),
            parameters,
            flow_ctx.parameters if flow_ctx else {},
            _log_prints.get(),
            upstream_assets,
            current_tags(),
        )


def _run_task_in_process(
    task: Any, task_run: TaskRun, parameters: dict[str, Any], flow_parameters: dict[str, Any], log_prints: bool,
    upstream_assets: Any = None, open_tags: tuple[str, ...] = (),
) -> State[Any]:
    setup_logging()
    _sink.configure_from_env()
    _log_prints.set(log_prints)
    _asset_hooks.inherited.set(upstream_assets)
    _tags.set(open_tags)  # the submitter's `with tags(...)` blocks, as TagsContext shows them
    try:
        return drive_sync(task_run_steps(task, task_run, parameters, None, flow_parameters))
    finally:
        _sink.flush_event_sink()
