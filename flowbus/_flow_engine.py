"""The flow-run state machine: Pending -> Running -> [AwaitingRetry -> Retrying]* -> final.

A generator (see `flowbus._drivers`) that yields where the flow body runs or a retry
waits, so the same code drives sync and async flow runs.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from types import GeneratorType
from typing import Any

from flowbus import _durable, _sink
from flowbus._drivers import Call, Sleep, Steps
from flowbus._params import random_run_name, render_run_name
from flowbus._run_support import (
    PENDING_PLACEHOLDER,
    interrupted_state,
    now,
    persist_result,
    resolve_inputs,
    retry_delay,
    run_hooks,
    set_flow_state,
)
from flowbus._state_rules import state_for_return_value
from flowbus.context import (
    FlowRun,
    FlowRunContext,
    _flow_run_ctx,
    _task_run_ctx,
    current_tags,
)
from flowbus.exceptions import (
    FlowRunTimeoutError,
    ParameterBindError,
    ParameterTypeError,
    Pause,
    UpstreamTaskError,
)
from flowbus.futures import resolve_futures_to_states
from flowbus.logging import (
    _log_prints,
    enable_log_prints,
    flow_run_logger,
    setup_logging,
)
from flowbus.states import (
    AwaitingRetry,
    Completed,
    Failed,
    Pending,
    Retrying,
    Running,
    State,
    StateType,
    Suspended,
    is_state_iterable,
)


def new_flow_run(
    flow: Any,
    parameters: dict[str, Any],
    *,
    flow_run_id: str | None = None,
    flow_run_name: str | None = None,
    deployment_id: str | None = None,
    deployment_name: str | None = None,
    tags: Iterable[str] = (),
    record_attempt: int = 0,
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
        state=PENDING_PLACEHOLDER,
        deployment_id=deployment_id,
        deployment_name=deployment_name,
        parent_flow_run_id=parent.flow_run.id if parent else None,
        parent_task_run_id=task_parent.task_run.id if task_parent else None,
        record_attempt=record_attempt,
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
        flow_run.end_time = now()
        set_flow_state(flow_run, final)
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
            yield from run_hooks(hooks, flow, flow_run, final, logger)
        if reraise is not None:
            raise reraise
        return final
    finally:
        _log_prints.reset(prints_token)
        _task_run_ctx.reset(task_token)
        _flow_run_ctx.reset(token)
        if is_top_level:
            _durable.flush()
            _sink.flush_event_sink()


def _flow_attempts(
    flow: Any, flow_run: FlowRun, ctx: FlowRunContext, wait_for: Iterable[Any] | None, logger: Any
) -> Steps[tuple[State[Any], BaseException | None]]:
    name_error: Exception | None = None
    if not flow_run.name:
        try:
            flow_run.name = (
                render_run_name(flow.flow_run_name, flow_run.parameters, "flow_run_name")
                if flow.flow_run_name is not None
                else random_run_name()
            )
        except Exception as exc:  # a name template or callable that fails fails the run
            flow_run.name, name_error = random_run_name(), exc
        logger = flow_run_logger(flow_run)
    set_flow_state(flow_run, Pending())
    logger.info("Beginning flow run %r for flow %r", flow_run.name, flow.name)
    if name_error is not None:
        logger.error("%s", name_error)
        return Failed(message=str(name_error), data=name_error), None
    try:
        parameters = resolve_inputs(flow_run.parameters, wait_for)
        if flow._validator is not None:
            parameters = flow._validator.validate(parameters)
    except (ParameterTypeError, ParameterBindError, UpstreamTaskError) as exc:
        logger.error("%s", exc)
        return Failed(message=str(exc), data=exc), None
    flow_run.parameters = ctx.parameters = parameters
    args, kwargs = flow._shape.to_call(parameters)
    runner = ctx.task_runner = flow.task_runner.duplicate()
    flow_run.start_time = now()
    while True:
        flow_run.run_count += 1
        flow_run.returned = None
        set_flow_state(flow_run, Running() if flow_run.run_count == 1 else Retrying())
        if flow_run.run_count == 1 and flow.on_running:
            yield from run_hooks(flow.on_running, flow, flow_run, flow_run.state, logger)
        runner.__enter__()
        ok, value = yield Call(flow.fn, args, kwargs, flow.timeout_seconds, FlowRunTimeoutError)
        try:
            if ok:
                final = _state_from_return(flow, flow_run, value)
        finally:
            runner.__exit__(None if ok else type(value), None if ok else value, None)
        if not ok:
            if isinstance(value, Pause):  # suspend_flow_run: the attempt ends Suspended
                return value.state or Suspended(), None
            if not isinstance(value, Exception):
                return interrupted_state(value), value
            final = _failed_attempt(flow, value, logger)
        if final.is_failed() and flow_run.run_count <= flow.retries:
            delay = retry_delay(flow.retry_delay_seconds, flow_run.run_count, flow.retries, None)
            logger.warning(
                "Retry %d/%d will start %s",
                flow_run.run_count,
                flow.retries,
                f"in {delay:g} second(s)" if delay else "immediately",
            )
            set_flow_state(flow_run, AwaitingRetry(message=final.message))
            if delay > 0:
                ok, error = yield Sleep(delay)
                if not ok:
                    return interrupted_state(error), error
            continue
        return final, None


def _failed_attempt(flow: Any, error: Exception, logger: Any) -> State[Any]:
    """The state of an attempt whose body raised ``error`` (a timeout: Prefect's message;
    the state stays "Failed", where Prefect names it "TimedOut")."""
    if isinstance(error, FlowRunTimeoutError):
        logger.error("Flow run exceeded timeout of %s second(s)", flow.timeout_seconds)
        return Failed(data=error, message=f"Flow run exceeded timeout of {flow.timeout_seconds} second(s)")
    logger.error("Encountered exception during execution: %r", error, exc_info=error)
    return Failed(message=f"Flow run encountered an exception: {type(error).__name__}: {error}", data=error)


def _state_from_return(flow: Any, flow_run: FlowRun, value: Any) -> State[Any]:
    """The flow's final state from what its body returned (Prefect's rule).

    Returned futures become their final states first; then `state_for_return_value`
    decides: a state the body built is the final state as is; another run's state,
    or a list/set/tuple of states only, gives their aggregate; any other value
    (a dict or tuple mixing states and values included) completes the run. The caller
    of the flow gets the returned value itself unless it is a state.
    """
    resolved = resolve_futures_to_states(value)
    if isinstance(resolved, GeneratorType):
        resolved = list(resolved)
    flow_run.returned = (resolved,)
    if isinstance(resolved, State) or is_state_iterable(resolved):
        return state_for_return_value(resolved)
    if flow.persist_result:
        try:
            return persist_result(flow, resolved, f"flow-runs/{flow_run.id}", None)
        except Exception as exc:  # unserializable, or the store refused it: the run fails
            flow_run.returned = None
            return Failed(message=str(exc), data=exc)
    return Completed(data=resolved)
