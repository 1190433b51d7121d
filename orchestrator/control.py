"""The orchestrator's side of control requests (:mod:`events.control`).

The leading orchestrator answers the gateway's cancel, resume and delete requests (and
its cancel of a background task run): it validates each one, performs the
compare-and-set write (or delete) on the run's record and publishes the state events, so the gateway's NATS user needs no write access to run
records. A standby does not subscribe: with no leader the gateway gets no responder
and answers 503.
"""

from __future__ import annotations

import asyncio

from events import assets, background, control, pauses
from events.bus import Bus
from events.control import ControlReply, ControlRequest
from events.errors import NotFound, TransitionRejected, UpdateConflict
from events.records import FlowRun
from events.runs import state_change_event
from events.states import StateType
from orchestrator.metrics import Metrics

CANCEL_MESSAGE = "cancelled through the API"
# A run is deleted only before a runner claims it or once it is final: a claimed run
# would go on running on its runner with no record (cancel it first).
DELETABLE = "Scheduled-type (Scheduled, Late, AwaitingRetry, ...) or final"


class ControlDesk:
    """Carries out control requests for the leader."""

    def __init__(self, bus: Bus, metrics: Metrics) -> None:
        self.bus = bus
        self.metrics = metrics
        self.serving = asyncio.Event()

    async def serve(self, halt: asyncio.Event) -> None:
        """Answer requests until ``halt`` is set (``serving`` is set meanwhile)."""
        async with control.answering(self.bus, self.answer):
            self.serving.set()
            try:
                await halt.wait()
            finally:
                self.serving.clear()

    async def answer(self, request: ControlRequest) -> ControlReply:
        if request.action == "cancel":
            reply = await self._cancel(request)
        elif request.action == "delete":
            reply = await self._delete(request)
        elif request.action == "cancel-task-run":
            reply = await self._cancel_task_run(request)
        elif request.action == "delete-asset":
            reply = await self._delete_asset(request)
        else:
            reply = await self._resume(request)
        self.metrics.control_requests.labels(request.action, reply.outcome).inc()
        return reply

    async def _cancel(self, request: ControlRequest) -> ControlReply:
        run_id = request.target
        kv = await self.bus.kv(self.bus.layout.flow_runs)

        def step(raw: bytes | None) -> bytes | None:
            if raw is None:
                raise NotFound(f"no flow run with id {run_id!r}")
            return FlowRun.model_validate_json(raw).cancel(CANCEL_MESSAGE).model_dump_json().encode()

        try:
            entry = await kv.update(run_id, step)
        except NotFound as exc:
            return ControlReply(outcome="not_found", detail=str(exc))
        except TransitionRejected as exc:
            return ControlReply(outcome="conflict", detail=str(exc))
        assert entry is not None
        updated = FlowRun.model_validate_json(entry.value)
        await self.bus.publish(state_change_event(updated, source=request.source))
        return ControlReply(outcome="ok", run=updated)

    async def _resume(self, request: ControlRequest) -> ControlReply:
        run_id = request.target
        try:
            run = await pauses.resume(self.bus, run_id, request.run_input, source=request.source)
        except NotFound:
            return ControlReply(outcome="not_found", detail=f"no flow run with id {run_id!r}")
        except pauses.NotPaused as exc:
            return ControlReply(outcome="conflict", detail=str(exc))
        except (pauses.InvalidRunInput, ValueError) as exc:
            return ControlReply(outcome="invalid", detail=str(exc))
        return ControlReply(outcome="ok", run=run)

    async def _delete(self, request: ControlRequest) -> ControlReply:
        """Delete the record with compare-and-set, so a runner claiming the run at the
        same moment either wins (the delete is refused) or finds no record."""
        run_id = request.target
        kv = await self.bus.kv(self.bus.layout.flow_runs)
        for _ in range(5):
            entry = await kv.get(run_id, latest=True)
            if entry is None:
                return ControlReply(outcome="not_found", detail=f"no flow run with id {run_id!r}")
            run = FlowRun.model_validate_json(entry.value)
            if not (run.state.is_final() or run.state.type is StateType.SCHEDULED):
                return ControlReply(outcome="conflict", detail=(
                    f"flow run {run_id!r} is {run.state.name}; only a {DELETABLE} run "
                    "can be deleted: cancel it first"))
            try:
                await kv.delete(run_id, revision=entry.revision)
            except UpdateConflict:
                continue
            return ControlReply(outcome="ok", run=run)
        return ControlReply(outcome="conflict",
                            detail=f"flow run {run_id!r} kept changing while being deleted; retry")

    async def _cancel_task_run(self, request: ControlRequest) -> ControlReply:
        """Move a background task run to Cancelled: a queued job is then dropped unrun,
        a running body is stopped by its worker (events/background.py)."""
        run_id = request.target
        kv = await self.bus.kv(self.bus.layout.task_runs)
        try:
            record = await background.cancel_task_run(kv, run_id, CANCEL_MESSAGE, bus=self.bus)
        except NotFound:
            return ControlReply(outcome="not_found", detail=f"no task run with id {run_id!r}")
        except background.NotCancellable as exc:
            return ControlReply(outcome="conflict", detail=str(exc))
        return ControlReply(outcome="ok", task_run=record)

    async def _delete_asset(self, request: ControlRequest) -> ControlReply:
        """Remove an asset from the catalog the leader keeps (``flowbus-assets``)."""
        key = request.target
        try:
            record = await assets.delete_asset(await self.bus.kv(self.bus.layout.assets), key)
        except UpdateConflict as exc:
            return ControlReply(outcome="conflict", detail=str(exc))
        if record is None:
            return ControlReply(outcome="not_found", detail=f"no asset with key {key!r}")
        return ControlReply(outcome="ok", asset=record)
