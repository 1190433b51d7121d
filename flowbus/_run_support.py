"""What task runs and flow runs share: state emission, retries, hooks, inputs, results."""

from __future__ import annotations

import asyncio
import datetime as _dt
import random
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from flowbus import _sink
from flowbus._drivers import Call, Steps
from flowbus.cache_policies import cache_store
from flowbus.context import (
    FlowRun,
    TaskRun,
)
from flowbus.exceptions import (
    RunInterrupted,
    UpstreamTaskError,
)
from flowbus.futures import FlowbusFuture, contains_upstream, rebuild
from flowbus.results import (
    decode_cache_record,
    encode_cache_record,
    resolve_result_store,
)
from flowbus.states import (
    Cancelled,
    Completed,
    Crashed,
    Pending,
    ResultRef,
    State,
)
from flowbus.utilities.annotations import BaseAnnotation, allow_failure, opaque, quote

_UTC = _dt.UTC


def now() -> _dt.datetime:
    return _dt.datetime.now(_UTC)




def run_result(run: FlowRun | TaskRun, state: State[Any]) -> Any:
    """What calling a flow or task gives, as in Prefect: the value its body returned
    (for a task, even a state); otherwise the final state's result (raising its
    error), i.e. when the body raised or a flow returned a state."""
    returned = run.returned
    if returned is not None and (isinstance(run, TaskRun) or not isinstance(returned[0], State)):
        return returned[0]
    return state.result(_sync=True)


def set_task_state(task_run: TaskRun, state: State[Any]) -> None:
    state._bind_run(task_run.flow_run_id, task_run.id)
    task_run.state = state
    if _sink.enabled:
        _sink.emit_state_event("task-run", task_run.id, state.name, task_run.to_dict())


def set_flow_state(flow_run: FlowRun, state: State[Any]) -> None:
    state._bind_run(flow_run.id, state._run_ids_now()[1])
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


def interrupted_state(exc: BaseException) -> State[Any]:
    """The final state for a run stopped by something that is not an error of its code."""
    if isinstance(exc, asyncio.CancelledError):
        return Cancelled(message="The run was cancelled.", data=exc)
    if isinstance(exc, RunInterrupted):
        return Crashed(message="The run was interrupted because an enclosing run timed out.")
    return Crashed(message=f"Execution was interrupted by {type(exc).__name__}.", data=exc)


def run_hooks(hooks: Iterable[Callable[..., Any]], obj: Any, run: Any, state: State[Any], logger: Any) -> Steps[None]:
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


def _resolve(value: Any, allow_failed: bool = False) -> Any:
    if isinstance(value, FlowbusFuture | State):
        state = value.final_state() if isinstance(value, FlowbusFuture) else value
        if allow_failed and state.is_final():
            return state.result(raise_on_failure=False, _sync=True)
        if not state.is_completed():
            name = value.task_run.name if isinstance(value, FlowbusFuture) else "upstream"
            raise UpstreamTaskError(
                f"Upstream task run {name!r} did not reach a 'COMPLETED' state (it is {state!r})."
            )
        return state.result(_sync=True)
    if isinstance(value, BaseAnnotation):
        inner = value.unwrap()
        if isinstance(value, quote):
            return inner
        if isinstance(value, opaque):
            return _resolve(inner, allow_failed) if isinstance(inner, FlowbusFuture | State) else inner
        return _resolve(inner, allow_failed or isinstance(value, allow_failure))
    if not contains_upstream(value):
        return value
    if isinstance(value, dict):
        return {k: _resolve(v, allow_failed) for k, v in value.items()}
    return rebuild(value, [_resolve(v, allow_failed) for v in value])


def resolve_inputs(parameters: dict[str, Any], wait_for: Iterable[Any] | None) -> dict[str, Any]:
    """Parameters with upstream futures/states replaced by their results.

    Raises `UpstreamTaskError` if an upstream run (or one in `wait_for`) did not complete,
    unless it is wrapped in `allow_failure` (then its exception is the value).
    `quote(x)` passes `x` untouched. Collections are copied only when they hold a
    future or a state.
    """
    if wait_for:
        for upstream in wait_for:
            if isinstance(upstream, FlowbusFuture | State | BaseAnnotation):
                _resolve(upstream)
    for value in parameters.values():
        if isinstance(value, BaseAnnotation) or contains_upstream(value):
            return {k: _resolve(v) for k, v in parameters.items()}
    return parameters


def persist_result(owner: Any, value: Any, key: str, cache_key: str | None) -> State[Any]:
    """A Completed state for `value`, written to the result store (and cache) first."""
    serializer = owner._serializer
    payload = serializer.dumps(value)
    store = resolve_result_store(owner.result_storage)
    store.write(key, payload)
    if cache_key is not None:
        expiration = getattr(owner, "cache_expiration", None)
        expires = now() + expiration if expiration is not None else None
        cache_store(getattr(owner, "_cache_policy", None)).write(
            cache_key, encode_cache_record(serializer, payload, expires))
    data = value if owner.cache_result_in_memory else ResultRef(store, key, serializer)
    return Completed(data=data)


def cache_lookup(cache_key: str, policy: Any = None) -> tuple[bool, Any]:
    """Whether the cache (``policy``'s ``key_storage``, else the process's) holds a
    live record for ``cache_key``, and its value."""
    record = cache_store(policy).read(cache_key)
    if record is None:
        return False, None
    decoded = decode_cache_record(record)
    if decoded is None:
        return False, None
    serializer, payload = decoded
    return True, serializer.loads(payload)



# A run record's state until its first real transition (never emitted).
PENDING_PLACEHOLDER: State[Any] = Pending()
