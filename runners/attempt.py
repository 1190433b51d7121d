"""One attempt of a flow run inside the process that executes it (worker or runner).

Loads the flow, reports its policy, runs it with the SDK engine, and turns the final
engine state into an :class:`~runners.types.Outcome`. An import or syntax error in
the user's code is a Failed outcome whose message and log carry the traceback.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
from pathlib import Path
from typing import Any

from events import attempts
from events.bus import Bus
from events.errors import FlowbusError
from events.logrecords import RUNNER_LOGGER, run_log_record
from flowbus import _sink
from flowbus._drivers import run_coro_sync
from flowbus._engine import run_flow, run_flow_async
from flowbus.entrypoints import load_flow
from flowbus.exceptions import FlowRunTimeoutError
from runners.results import failure_message, result_document
from runners.types import FlowInfo, Outcome, RunSpec


def emit_run_log(flow_run_id: str, level: int, message: str, name: str = RUNNER_LOGGER) -> None:
    """One log line of a run, through the event sink to the logs stream."""
    if _sink.enabled:
        _sink.emit_log_record(run_log_record(flow_run_id=flow_run_id, name=name, level=level,
                                             message=message))


def flow_info(flow: Any) -> FlowInfo:
    return FlowInfo(
        name=str(flow.name),
        retries=int(flow.retries),
        timeout_seconds=flow.timeout_seconds,
        has_cancellation_hooks=bool(flow.on_cancellation),
    )


def load(spec: RunSpec) -> Any:
    """The flow of ``spec`` (raises whatever importing the user's code raised)."""
    return load_flow(f"{spec.module}:{spec.attribute}", Path(spec.code_root))


def load_failure(spec: RunSpec, exc: BaseException) -> Outcome:
    """A Failed outcome for code that could not be loaded, its traceback logged."""
    message = failure_message(
        f"Could not load the flow {spec.module}:{spec.attribute}: {type(exc).__name__}: {exc}", exc
    )
    emit_run_log(spec.flow_run_id, logging.ERROR, message)
    return Outcome("final", "Failed", message)


def _engine_kwargs(spec: RunSpec) -> dict[str, Any]:
    return {
        "flow_run_id": spec.flow_run_id,
        "flow_run_name": spec.flow_run_name or None,
        "deployment_id": spec.deployment_id,
        "deployment_name": spec.deployment_name,
        "tags": spec.tags,
        "return_state": True,
        # From the 2nd on, completed tasks are reused; 0 (no record): durable reuse off.
        "record_attempt": spec.attempt if spec.durable_tasks else 0,
    }


def outcome_of(flow: Any, spec: RunSpec, state: Any) -> Outcome:
    """The outcome for the engine's final ``state``; persists nothing, builds the document."""
    timed_out = isinstance(state.data, FlowRunTimeoutError)
    if state.is_completed():
        document, problem = result_document(flow, state.result(_sync=True), spec.result_max_bytes)
        if problem:
            emit_run_log(spec.flow_run_id, logging.WARNING, problem)
        return Outcome("final", "Completed", state.message, result=document)
    if state.is_failed():
        return Outcome("final", "Failed", failure_message(state.message, state.data),
                       recycle=timed_out)
    if state.name == "Suspended":  # suspend_flow_run: the runner releases the run
        return Outcome("final", "Suspended", state.message)
    return Outcome("final", state.name if state.name in ("Crashed", "Cancelled") else "Crashed",
                   failure_message(state.message, state.data))


def _bad_call(spec: RunSpec, exc: Exception) -> Outcome:
    # Parameters that do not bind to the function fail before the engine starts.
    message = failure_message(f"The flow could not be called: {type(exc).__name__}: {exc}", exc)
    emit_run_log(spec.flow_run_id, logging.ERROR, message)
    return Outcome("final", "Failed", message)


def run_sync(flow: Any, spec: RunSpec) -> Outcome:
    try:
        state = run_flow(flow, spec.parameters, **_engine_kwargs(spec))
    except Exception as exc:
        return _bad_call(spec, exc)
    return outcome_of(flow, spec, state)


async def run_async(flow: Any, spec: RunSpec) -> Outcome:
    try:
        state = await run_flow_async(flow, spec.parameters, **_engine_kwargs(spec))
    except Exception as exc:
        return _bad_call(spec, exc)
    return outcome_of(flow, spec, state)


def cancellation_hooks(flow: Any, spec: RunSpec, message: str) -> None:
    """Run the flow's ``on_cancellation`` hooks for a stopped run (errors are logged)."""
    from flowbus.context import FlowRun
    from flowbus.states import Cancelled

    state = Cancelled(message=message)
    run = FlowRun(
        id=spec.flow_run_id, name=spec.flow_run_name, flow_name=flow.name,
        parameters=dict(spec.parameters), tags=spec.tags, state=state,
        deployment_id=spec.deployment_id, deployment_name=spec.deployment_name,
    )
    for hook in flow.on_cancellation:
        name = getattr(hook, "__name__", repr(hook))
        try:
            value = hook(flow, run, state)
            if inspect.isawaitable(value):
                run_coro_sync(value)
        except Exception as exc:
            emit_run_log(spec.flow_run_id, logging.ERROR,
                         failure_message(f"on_cancellation hook {name!r} failed", exc))
        else:
            emit_run_log(spec.flow_run_id, logging.INFO,
                         f"Hook {name!r} finished running successfully")


async def persist_outcome(bus: Bus, spec: RunSpec, outcome: Outcome) -> Outcome:
    """Make a final outcome durable: the result object, then the attempt's outcome key.

    Returns the outcome as recorded (``recorded``, ``result_ref`` set, the document
    dropped), or a ``stopped`` outcome when a takeover had already superseded the
    attempt (the outcome is refused: the run is someone else's now).
    """
    result_ref = None
    if outcome.result is not None and outcome.state_name == "Completed":
        try:
            store = await bus.objects(bus.layout.results)
            await store.put_once(spec.result_name, outcome.result)
            result_ref = spec.result_name
        except FlowbusError as exc:
            emit_run_log(spec.flow_run_id, logging.WARNING, f"the result was not persisted: {exc}")
    kv = await bus.kv(bus.layout.attempts)
    stands = await attempts.record_outcome(kv, spec.flow_run_id, spec.attempt,
                                           outcome.state_name, outcome.message, result_ref)
    if stands.kind != "outcome":
        return Outcome("stopped", extra={"reason": "superseded"})
    return dataclasses.replace(outcome, result=None, recorded=True,
                               state_name=stands.state_name or outcome.state_name,
                               message=stands.message, result_ref=stands.result_ref)
