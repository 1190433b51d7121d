"""Pausing, suspending and resuming flow runs, and the flow-run input they wait for.

A run's body pauses itself (``flowbus.flow_runs.pause_flow_run``): its record moves
Running -> ``Paused`` and its runner keeps it (the body waits in place, the runner
keeps heartbeating). Or it suspends itself (``suspend_flow_run``): Running ->
``Suspended``, the attempt ends and the runner releases the run. The state's
:class:`~events.records.PauseDetails` hold what resuming needs: the pause key, the
expiry, the keys of the run input it waits for.

:func:`resume` is the one implementation of resuming (the REST API, the command line
and the SDK call it): the input is validated against the schema the body saved, the
response stored, then a Paused run goes back to Running (the waiting body sees it
through its watch) and a Suspended run to ``Resuming`` (Prefect's name: a SCHEDULED
state), with its next job published so any runner of its pool starts a new attempt.
A runner that drains while it holds a Paused run hands it over as Suspended
(:func:`handed_over`): resumed, it restarts on any runner. The Resumed event
(:data:`FLOW_RUN_RESUMED`) follows the state event, so automations can notify.

Run input lives in the ``<ns>-flow-run-input`` KV bucket under
``<flow-run-id>.<key>``, the keys as Prefect names them (:func:`keyset_from_base_key`).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from events.bus import MSG_ID_HEADER, Bus
from events.cloudevent import CloudEvent
from events.errors import FlowbusError, NotFound, TransitionRejected
from events.kv import KV
from events.records import FlowRun, State, utcnow
from events.runs import FlowRunStateEvent, Job, state_change_event

FLOW_RUN_RESUMED = "flowbus.flow-run.Resumed"
PAUSED_STATES = frozenset({"Paused", "Suspended"})
KEY_RE = re.compile(r"^[A-Za-z0-9_=-]{1,200}$")
EXPIRED_MESSAGE = "The flow was {verb} and never resumed."


class NotPaused(FlowbusError):
    """The run is not Paused or Suspended (or its pause expired): it cannot be resumed."""


class PauseExpired(NotPaused):
    """The pause timed out before the run was resumed; the run is Failed."""


class InvalidRunInput(FlowbusError, ValueError):
    """The run input does not match the schema the paused run waits for."""


def check_key(key: str, what: str = "key") -> str:
    """A pause or input key usable in a KV key; ``ValueError`` naming the rule otherwise."""
    if not isinstance(key, str) or KEY_RE.fullmatch(key) is None:
        raise ValueError(f"{what} {str(key)[:100]!r} must be 1-200 letters, digits, '_', '-' or '='")
    return key


def keyset_from_base_key(base_key: str) -> dict[str, str]:
    """The run-input keys of one pause: ``description``, ``response``, ``schema``."""
    return {"description": f"{base_key}-description", "response": f"{base_key}-response",
            "schema": f"{base_key}-schema"}


def keyset_for(state_name: str, pause_key: str) -> dict[str, str]:
    """The keyset of a ``Paused``/``Suspended`` state with ``pause_key`` (Prefect's names)."""
    return keyset_from_base_key(f"{state_name.lower()}-{pause_key}")


def input_key(flow_run_id: str, key: str) -> str:
    return f"{flow_run_id}.{check_key(key, 'run input key')}"


def expired(run: FlowRun, now: datetime) -> bool:
    pause = run.state.data.pause
    return (run.state.name in PAUSED_STATES and pause is not None
            and pause.timeout is not None and pause.timeout <= now)


def validate_run_input(schema: dict[str, Any], value: Any) -> None:
    """``InvalidRunInput`` listing every place ``value`` breaks ``schema`` (JSON Schema)."""
    import jsonschema

    try:
        validator = jsonschema.Draft202012Validator(schema)
        errors = sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path))
    except (jsonschema.SchemaError, RecursionError, ValueError) as exc:
        raise InvalidRunInput(f"the run's input schema cannot be used: {str(exc)[:300]}") from None
    if errors:
        parts = []
        for error in errors[:10]:
            where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
            parts.append(f"{where}: {error.message[:200]}")
        raise InvalidRunInput("run input does not match the run's input schema: " + "; ".join(parts))


def paused_record(run: FlowRun, name: str, key: str, *, timeout: datetime | None,
                  keyset: dict[str, str] | None, message: str, requested: bool = False) -> FlowRun:
    """``run`` moved to ``Paused``/``Suspended``, its pause ``key`` fired.

    ``requested``: suspended from outside the run (its runner stops the attempt).
    A suspension is counted so that it does not use up the run's crash retries.
    """
    from events.records import PauseDetails

    details = PauseDetails(key=key, reschedule=name == "Suspended", timeout=timeout,
                           run_input_keyset=keyset, requested=requested)
    state = State.named(name, message=message,
                        data=run.state.data.model_copy(update={"pause": details}))
    return run.transition(state, pause_keys=[*run.pause_keys, key],
                          suspensions=run.suspensions + (name == "Suspended"))


HANDED_OVER_MESSAGE = ("The runner stopped while the run was paused; resumed, it restarts on "
                       "another runner")


def handed_over(run: FlowRun) -> FlowRun:
    """A Paused run whose runner drains, made Suspended: the same pause (key, expiry,
    input keys) but released (no runner), so a resume starts a new attempt anywhere; the
    body then restarts and its ``pause_flow_run`` returns at once (its key fired)."""
    pause = run.state.data.pause
    if run.state.name != "Paused" or pause is None:
        raise TransitionRejected(f"flow run {run.id} is {run.state.name}, not Paused")
    details = pause.model_copy(update={"reschedule": True, "requested": False})
    state = State.named("Suspended", message=HANDED_OVER_MESSAGE,
                        data=run.state.data.model_copy(update={"pause": details}))
    return run.transition(state, runner_id=None, suspensions=run.suspensions + 1)


async def resume(bus: Bus, flow_run_id: str, run_input: dict[str, Any] | None = None, *,
                 source: str) -> FlowRun:
    """Resume a Paused or Suspended run; the record after.

    Raises :class:`NotFound`, :class:`NotPaused` (not paused, or its pause expired:
    the run is then Failed), :class:`InvalidRunInput`.
    """
    kv = await bus.kv(bus.layout.flow_runs)
    entry = await kv.get(flow_run_id)
    if entry is None:
        raise NotFound(f"flow run {flow_run_id!r} not found")
    run = FlowRun.model_validate_json(entry.value)
    if run.state.name not in PAUSED_STATES:
        raise NotPaused(f"flow run {run.id} is {run.state.name}, not Paused or Suspended; "
                        "only a paused run can be resumed")
    if expired(run, utcnow()):
        failed = await fail_expired(kv, run)
        if failed is not None:
            await bus.publish(state_change_event(failed, source=source))
        raise PauseExpired(f"flow run {run.id}: the pause timed out; the run can no longer resume")
    pause = run.state.data.pause
    keyset = pause.run_input_keyset if pause is not None else None
    from events import run_input as inputs

    store = await bus.kv(bus.layout.run_input)
    if keyset:
        schema = await inputs.get_input(store, run.id, keyset["schema"])
        if schema is None or not isinstance(schema.value, dict):
            raise NotPaused(f"flow run {run.id} waits for input but its schema is not saved yet; retry")
        value = {} if run_input is None else run_input
        validate_run_input(schema.value, value)
        try:
            # Stored before the state moves: the waiting body reads it once it sees Running.
            await inputs.put_input(store, run.id, keyset["response"], value)
        except ValueError as exc:
            raise InvalidRunInput(str(exc)) from None
    elif run_input:
        raise InvalidRunInput(f"flow run {run.id} does not wait for input; resume it without input")
    resumed = await _move_resumed(bus, run.id)
    await bus.publish_many([
        state_change_event(resumed, source=source),
        CloudEvent.create(FLOW_RUN_RESUMED, source=source, subject=f"flowbus.flow-run.{run.id}",
                          data=FlowRunStateEvent(**dict(resumed), deployment=resumed.deployment_name)
                          .model_dump(mode="json")),
    ])
    if resumed.state.name == "Resuming":
        job = Job.of(resumed)
        await bus.publish_raw(bus.layout.runs_subject(resumed.work_pool), job.encode(),
                              {MSG_ID_HEADER: job.msg_id})
    return resumed


async def _move_resumed(bus: Bus, flow_run_id: str) -> FlowRun:
    kv = await bus.kv(bus.layout.flow_runs)
    result: list[FlowRun] = []

    def step(raw: bytes | None) -> bytes:
        if raw is None:
            raise NotFound(f"flow run {flow_run_id!r} not found")
        run = FlowRun.model_validate_json(raw)
        if run.state.name not in PAUSED_STATES:
            raise NotPaused(f"flow run {run.id} is {run.state.name} now, not paused")
        data = run.state.data.model_copy(update={"pause": None})
        if run.state.name == "Suspended":
            new = run.transition(State.named("Resuming", message="Resumed; waiting for a runner",
                                             data=data),
                                 runner_id=None, expected_start_time=utcnow())
        else:
            new = run.transition(State.named("Running", message="Resumed", data=data))
        result[:] = [new]
        return new.model_dump_json().encode()

    try:
        await kv.update(flow_run_id, step)
    except TransitionRejected as exc:
        raise NotPaused(str(exc)) from None
    return result[0]


async def fail_expired(kv: KV, run: FlowRun) -> FlowRun | None:
    """Fail ``run`` if its pause expired (it never resumed, as Prefect): the Failed record."""
    verb = "suspended" if run.state.name == "Suspended" else "paused"
    failed: list[FlowRun] = []

    def step(raw: bytes | None) -> bytes | None:
        if raw is None:
            return None
        current = FlowRun.model_validate_json(raw)
        if not expired(current, utcnow()):
            return None
        new = current.transition(State.named("Failed", message=EXPIRED_MESSAGE.format(verb=verb),
                                             data=current.state.data), end_time=utcnow())
        failed[:] = [new]
        return new.model_dump_json().encode()

    await kv.update(run.id, step)
    return failed[0] if failed else None


__all__ = [
    "FLOW_RUN_RESUMED", "HANDED_OVER_MESSAGE", "InvalidRunInput", "NotPaused", "PauseExpired", "check_key",
    "expired", "fail_expired", "handed_over", "input_key", "keyset_for", "keyset_from_base_key",
    "paused_record", "resume", "validate_run_input",
]
