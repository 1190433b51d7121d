"""``pause_flow_run``, ``suspend_flow_run``, ``resume_flow_run`` (exported by
``flowbus.flow_runs``), on the flow-run record (see ``events/pauses.py``).

A pause needs the run's record on the server: it works in runs a runner executes
(a deployment's runs). The body's own record moves to Paused or Suspended by
compare-and-set, like any other write; its runner sees the change and keeps
heartbeating (Paused) or releases the run when the attempt ends (Suspended).
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import time
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

from events import pauses
from events.errors import NotFound, TransitionRejected
from events.records import FlowRun
from events.runs import state_change_event
from flowbus._dual import dual
from flowbus.exceptions import FlowPauseTimeout, NotPausedError, Pause
from flowbus.input import actions
from flowbus.input.run_input import run_input_subclass_from_type

SOURCE = "flowbus/sdk"
FIRED = "fired"
WAIT_CHUNK = 20.0  # one watch call on the server connection (its call timeout is 30 s)
MIN_POLL_INTERVAL = 1.0  # a shorter poll_interval would only renew the watch needlessly


def _next_key(ctx: Any, key: str | None) -> str:
    ctx.observed_pauses += 1
    return pauses.check_key(key or str(ctx.observed_pauses), "pause key")


def _propose(run_id: str, name: str, key: str, timeout: float | None, wait_for_input: Any,
             requested: bool = False) -> Callable[[Any], Coroutine[Any, Any, FlowRun | str]]:
    """The server-side steps of a pause: schema first, then the record, then its event.

    Returns ``FIRED`` when this pause key already fired in the run (the run was
    resumed and its body restarted), else the record as paused.
    """
    verb = "suspended" if name == "Suspended" else "paused"
    keyset = pauses.keyset_for(name, key) if wait_for_input is not None else None

    async def op(bus: Any) -> FlowRun | str:
        from events.run_input import put_input

        kv = await bus.kv(bus.layout.flow_runs)
        entry = await kv.get(run_id)
        if entry is None:
            raise RuntimeError(
                f"Flow run cannot be {verb}: flow run {run_id} has no record on the server "
                "(pausing works in runs of a deployment, which runners execute)")
        run = FlowRun.model_validate_json(entry.value)
        if key in run.pause_keys:
            return FIRED
        if run.state.name not in ("Running", "Retrying"):
            raise RuntimeError(f"Flow run cannot be {verb}: it is {run.state.name}, not running")
        if name == "Suspended" and run.deployment_id is None:
            raise RuntimeError("Cannot suspend flows without a deployment.")
        if keyset is not None:
            store = await bus.kv(bus.layout.run_input)
            await put_input(store, run_id, keyset["schema"], wait_for_input.model_json_schema())
            if isinstance(wait_for_input._description, str):
                await put_input(store, run_id, keyset["description"], wait_for_input._description)
        expires = (None if timeout is None
                   else _dt.datetime.now(_dt.UTC) + _dt.timedelta(seconds=timeout))
        paused: list[FlowRun] = []

        def step(raw: bytes | None) -> bytes:
            if raw is None:
                raise RuntimeError(f"flow run {run_id} disappeared")
            current = FlowRun.model_validate_json(raw)
            new = pauses.paused_record(
                current, name, key, timeout=expires, keyset=keyset, requested=requested,
                message=f"Waiting to be resumed (pause key {key!r})")
            paused[:] = [new]
            return new.model_dump_json().encode()

        try:
            await kv.update(run_id, step)
        except TransitionRejected as exc:
            raise RuntimeError(f"Flow run cannot be {verb}: {exc}") from None
        await bus.publish(state_change_event(paused[0], source=SOURCE))
        return paused[0]

    return op


def _watch_pause(run_id: str, limit: float) -> Callable[[Any], Coroutine[Any, Any, str]]:
    """Wait up to ``limit`` seconds for the record to leave Paused; the state name then."""

    async def op(bus: Any) -> str:
        kv = await bus.kv(bus.layout.flow_runs)
        try:
            async with asyncio.timeout(limit):
                async for change in kv.watch(run_id):
                    if change.value is None:
                        continue
                    name = FlowRun.model_validate_json(change.value).state.name
                    if name != "Paused":
                        return name
        except TimeoutError:
            pass
        return "Paused"

    return op


def _continue_after_timeout(run_id: str) -> Callable[[Any], Coroutine[Any, Any, None]]:
    """The pause expired: the body goes on (to fail, or to handle FlowPauseTimeout)."""

    async def op(bus: Any) -> None:
        from events.records import State

        kv = await bus.kv(bus.layout.flow_runs)

        def step(raw: bytes | None) -> bytes | None:
            if raw is None:
                return None
            run = FlowRun.model_validate_json(raw)
            if run.state.name != "Paused":
                return None
            data = run.state.data.model_copy(update={"pause": None})
            return run.transition(State.named(
                "Running", message="The pause timed out", data=data)).model_dump_json().encode()

        try:
            await kv.update(run_id, step)
        except TransitionRejected:
            pass

    return op


def _flow_context(verb: str) -> Any:
    from flowbus.context import FlowRunContext

    ctx = FlowRunContext.get()
    if ctx is None:
        raise RuntimeError(f"Flow runs can only be {verb} from within a flow run.")
    return ctx


def _log(ctx: Any, message: str) -> None:
    from flowbus.logging import flow_run_logger

    flow_run_logger(ctx.flow_run).info(message)


async def apause_flow_run(wait_for_input: Any = None, timeout: int = 3600, poll_interval: int = 10,  # noqa: ASYNC109 (Prefect's signature)
                          key: str | None = None) -> Any:
    """`pause_flow_run` for async flows: waits without blocking the event loop."""
    return await asyncio.to_thread(_pause, wait_for_input, timeout, key, poll_interval)


@dual(apause_flow_run)
def pause_flow_run(wait_for_input: Any = None, timeout: int = 3600, poll_interval: int = 10,
                   key: str | None = None) -> Any:
    """Pause the current flow run until it is resumed; its runner keeps it meanwhile.

    ``timeout``: seconds to wait for the resume; then `FlowPauseTimeout` is raised in
    the body (uncaught, the run fails). ``key``: a pause fires once per key
    (default: how many pauses this run made). ``wait_for_input``: a `RunInput`
    subclass or any type; the resume must bring input valid for it, which is
    returned. ``poll_interval``: the record is watched, so a resume is seen at once;
    the watch is renewed (the record read afresh) every ``poll_interval`` seconds
    (1 to 20), so a change a watch missed while NATS reconnected is seen by then.
    """
    return _pause(wait_for_input, timeout, key, poll_interval)


def _pause(wait_for_input: Any, timeout: int, key: str | None, poll_interval: float = 10) -> Any:
    if timeout is not None and timeout < 0:
        raise ValueError(f"timeout must be >= 0 seconds, got {timeout}")
    if not isinstance(poll_interval, int | float) or poll_interval != poll_interval:
        raise ValueError(f"poll_interval must be a number of seconds, got {poll_interval!r}")
    chunk = min(WAIT_CHUNK, max(MIN_POLL_INTERVAL, float(poll_interval)))
    ctx = _flow_context("paused")
    pause_key = _next_key(ctx, key)
    cls = run_input_subclass_from_type(wait_for_input) if wait_for_input is not None else None
    _log(ctx, "Pausing flow, execution will continue when this flow run is resumed.")
    run_id = ctx.flow_run.id
    proposed = actions.on_server(_propose(run_id, "Paused", pause_key, timeout, cls))
    keyset = pauses.keyset_for("Paused", pause_key)
    if proposed != FIRED:
        deadline = time.monotonic() + timeout
        state = "Paused"
        while state == "Paused" and (remaining := deadline - time.monotonic()) > 0:
            state = actions.on_server(_watch_pause(run_id, min(chunk, remaining)))
        if state == "Paused":
            actions.on_server(_continue_after_timeout(run_id))
            raise FlowPauseTimeout("Flow run was paused and never resumed.")
        if state != "Running":
            raise RuntimeError(f"Flow run was {state} while paused; it does not continue")
        _log(ctx, "Resuming flow run execution!")
    return cls.load(keyset, run_id, _sync=True) if cls is not None else None


async def asuspend_flow_run(wait_for_input: Any = None, flow_run_id: str | uuid.UUID | None = None,
                            timeout: int | None = None, key: str | None = None) -> Any:  # noqa: ASYNC109
    """`suspend_flow_run` for async flows."""
    return await asyncio.to_thread(_suspend, wait_for_input, flow_run_id, timeout, key)


@dual(asuspend_flow_run)
def suspend_flow_run(wait_for_input: Any = None, flow_run_id: str | uuid.UUID | None = None,
                     timeout: int | None = None, key: str | None = None) -> Any:
    """Suspend a flow run: its attempt ends and its runner is released.

    Resumed (`resume_flow_run`, the API, ``flowbus flow-run resume``), the run starts
    again on any runner of its pool; the body restarts, completed tasks are reused,
    and this call returns at once (with the input, for ``wait_for_input``).
    ``timeout``: seconds after which an unresumed run fails (default: none).
    ``flow_run_id``: suspend another run (its runner stops its attempt).
    """
    return _suspend(wait_for_input, flow_run_id, timeout, key)


def _suspend(wait_for_input: Any, flow_run_id: str | uuid.UUID | None, timeout: int | None,
             key: str | None) -> Any:
    from flowbus.context import TaskRunContext

    cls = run_input_subclass_from_type(wait_for_input) if wait_for_input is not None else None
    if flow_run_id is None:
        if TaskRunContext.get() is not None:
            raise RuntimeError("Cannot suspend task runs.")
        ctx = _flow_context("suspended")
        if ctx.flow_run.parent_flow_run_id is not None:
            raise RuntimeError("Cannot suspend subflows.")
        pause_key = _next_key(ctx, key)
        run_id = ctx.flow_run.id
        _log(ctx, "Suspending flow run, execution will be rescheduled when this flow run is resumed.")
    else:
        run_id = str(flow_run_id)
        pause_key = pauses.check_key(key or str(uuid.uuid4()), "pause key")
    proposed = actions.on_server(_propose(run_id, "Suspended", pause_key, timeout, cls,
                                          requested=flow_run_id is not None))
    keyset = pauses.keyset_for("Suspended", pause_key)
    if proposed == FIRED:
        return cls.load(keyset, run_id, _sync=True) if cls is not None else None
    if flow_run_id is None:
        from flowbus.states import Suspended

        raise Pause(state=Suspended(timeout_seconds=timeout, pause_key=pause_key))
    return None


def _resume_op(run_id: str, run_input: dict[str, Any] | None) -> Callable[[Any], Coroutine[Any, Any, FlowRun]]:
    async def op(bus: Any) -> FlowRun:
        return await pauses.resume(bus, run_id, run_input, source=SOURCE)

    return op


def _resume_errors(exc: Exception) -> Exception:
    if isinstance(exc, pauses.PauseExpired):
        return FlowPauseTimeout("Flow run can no longer be resumed.")
    if isinstance(exc, pauses.NotPaused | NotFound):
        return NotPausedError(f"Cannot resume a run that isn't paused! ({exc})")
    return RuntimeError(f"Cannot resume this run: {exc}")


async def aresume_flow_run(flow_run_id: str | uuid.UUID, run_input: dict[str, Any] | None = None) -> None:
    try:
        await actions.on_server_async(_resume_op(str(flow_run_id), run_input))
    except (pauses.NotPaused, NotFound, pauses.InvalidRunInput) as exc:
        raise _resume_errors(exc) from None


@dual(aresume_flow_run)
def resume_flow_run(flow_run_id: str | uuid.UUID, run_input: dict[str, Any] | None = None) -> None:
    """Resume a Paused or Suspended flow run, with ``run_input`` if it waits for input.

    Raises `NotPausedError` for a run that is not paused, `FlowPauseTimeout` when its
    pause expired, and ``RuntimeError`` naming the problem for invalid input.
    """
    try:
        actions.on_server(_resume_op(str(flow_run_id), run_input))
    except (pauses.NotPaused, NotFound, pauses.InvalidRunInput) as exc:
        raise _resume_errors(exc) from None


__all__ = ["apause_flow_run", "aresume_flow_run", "asuspend_flow_run", "pause_flow_run",
           "resume_flow_run", "suspend_flow_run"]
