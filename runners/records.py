"""The records of the runs a runner holds: compare-and-set writes and announcements.

Every change to a held run's record is a compare-and-set on the revision the runner
last wrote or read (:meth:`Recorder.write`), and carries the attempt number as a
fencing token: a write is only made while the stored record is still at that
attempt. When the compare-and-set fails, the record is read again: a run that
another runner (or an operator) took, that a newer attempt holds, or that became
final elsewhere, is no longer ours and its attempt is stopped; a run that became
``Cancelling`` is cancelled. State changes are announced as
``flowbus.flow-run.<State>`` events (``events.runs.state_change_event``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from events import attempts
from events.bus import Bus, Delivery
from events.errors import (
    FlowbusError,
    NotFound,
    PublishFailed,
    TransitionRejected,
    UpdateConflict,
)
from events.kv import KV, Objects
from events.kv_window import KVWindow
from events.logrecords import RUNNER_LOGGER, run_log_record
from events.records import Deployment, FlowRun, utcnow
from events.runs import state_change_event
from runners.types import Execution, FlowInfo, Outcome, RunSpec, result_name

log = logging.getLogger("flowbus.runner")

SOURCE = "flowbus/runner"
DEPLOYMENT_TTL = 5.0
DEPLOYMENT_CACHE = 1024


@dataclass(eq=False)
class HeldRun:
    """A run this runner claimed, with the record revision its next write must name."""

    delivery: Delivery
    run: FlowRun
    revision: int
    attempt: int  # the fencing token: run_count when this runner claimed the run
    deployment: Deployment | None
    signal: asyncio.Future[str]
    execution: Execution | None = None
    spec: RunSpec | None = None
    info: FlowInfo | None = None
    finishing: bool = False
    started: float = field(default_factory=time.monotonic)

    def stop_for(self, reason: str) -> None:
        if not self.signal.done():
            self.signal.set_result(reason)


class Recorder:
    """Writes and announces the records of one runner's runs."""

    def __init__(self, bus: Bus, kv: KV, runner_id: str, *, attempts: KV,
                 results: Objects, window: KVWindow | None = None) -> None:
        self.bus = bus
        self.kv = kv
        # The runs' compare-and-set writes, sent with the others of the same moment.
        self.window = window
        # The revision of each held run's record this runner last wrote itself.
        self.written: dict[str, int] = {}
        self.runner_id = runner_id
        self.attempts = attempts
        self.results = results
        self._deployments: OrderedDict[str, tuple[float, Deployment | None]] = OrderedDict()

    async def write(self, held: HeldRun, change: Callable[[FlowRun], FlowRun], *,
                     announce: bool = False) -> bool:
        """Compare-and-set ``change(record)``; False when the run is no longer ours."""
        for _ in range(20):
            try:
                new = change(held.run)
            except TransitionRejected as exc:
                log.warning("flow run %s: %s", held.run.id, exc)
                return False
            if held.run.run_count != held.attempt or new.run_count != held.attempt:
                log.warning("flow run %s: a write of attempt %d refused: the record is at "
                            "attempt %d", held.run.id, held.attempt, held.run.run_count)
                held.stop_for("lost")
                return False
            try:
                held.revision = await self.cas(held.run.id, dump(new), held.revision)
            except UpdateConflict:
                if not await self.refresh(held):
                    return False
                continue
            held.run = new
            if announce:
                await self.announce(new)
            return True
        return False

    async def cas(self, key: str, value: bytes, revision: int) -> int:
        """Compare-and-set a record (through the window when there is one)."""
        if self.window is None:
            written = await self.kv.cas(key, value, revision)
        else:
            try:
                written = await self.window.cas(key, value, revision)
            except PublishFailed:
                # JetStream refused the window's write (a stream without a leader,
                # say): once more through KV, which raises its own errors.
                written = await self.kv.cas(key, value, revision)
        self.written[key] = written
        return written

    async def store_outcome(self, held: HeldRun, outcome: Outcome) -> Outcome | None:
        """Store an outcome the executing process did not (events.attempts); None if refused."""
        result_ref = None
        if outcome.result is not None and outcome.state_name == "Completed":
            name = result_name(held.run.id, held.attempt)
            try:
                await self.results.put_once(name, outcome.result)
                result_ref = name
            except FlowbusError as exc:
                await self.log(held.run.id, logging.WARNING, f"the result was not persisted: {exc}")
        stands = await attempts.record_outcome(self.attempts, held.run.id, held.attempt,
                                               outcome.state_name, outcome.message, result_ref)
        if stands.kind != "outcome":
            log.warning("flow run %s: attempt %d was superseded; its outcome is refused",
                        held.run.id, held.attempt)
            held.stop_for("lost")
            return None
        return dataclasses.replace(outcome, recorded=True, result=None,
                                   state_name=stands.state_name or outcome.state_name,
                                   message=stands.message, result_ref=stands.result_ref)

    async def settle_crash(self, held: HeldRun, reason: str, now: datetime) -> bool:
        """Settle a held attempt whose worker died, as a takeover would; False if not ours."""
        settled = await attempts.settle(self.attempts, held.run.id, held.attempt)
        for step in attempts.after_crash(held.run, settled, reason, now):
            if not await self.write(held, _constant(step), announce=True):
                return False
        return True

    async def refresh(self, held: HeldRun) -> bool:
        """Re-read a held run's record after a lost CAS; False (and stop it) if not ours.

        From the stream leader: a lagging replica could show no record or an older one,
        and stop an attempt that is still ours (events.kv)."""
        entry = await self.kv.get(held.run.id, latest=True)
        if entry is None:
            held.stop_for("lost")
            return False
        run = FlowRun.model_validate_json(entry.value)
        ours = run.runner_id == self.runner_id and run.run_count == held.attempt
        if ours and run.state.is_final() and held.finishing:
            return False  # our own final write won the race; nothing is lost
        if not ours or run.state.is_final():
            log.warning("flow run %s was taken over (%s, runner %s): stopping it",
                        run.id, run.state.name, run.runner_id)
            held.stop_for("lost")
            return False
        held.run, held.revision = run, entry.revision
        if run.state.name == "Cancelling":
            held.stop_for("cancel")
        return True

    async def announce(self, run: FlowRun) -> None:
        await self.announce_many([run])

    async def announce_many(self, runs: list[FlowRun]) -> None:
        events = [state_change_event(run, source=SOURCE) for run in runs]
        try:
            await self.bus.publish_many(events)
        except FlowbusError as exc:
            log.warning("could not announce flow run %s: %s", runs[0].id, exc)

    async def log(self, flow_run_id: str, level: int, message: str) -> None:
        record = [run_log_record(flow_run_id=flow_run_id, name=RUNNER_LOGGER, level=level,
                                 message=message, timestamp=utcnow())]
        try:
            await self.bus.publish_raw(self.bus.layout.logs_subject(flow_run_id),
                                       json.dumps(record).encode())
        except FlowbusError as exc:
            log.warning("could not ship a log line of %s: %s", flow_run_id, exc)

    async def deployment(self, name: str | None) -> Deployment | None:
        if name is None:
            return None
        now = time.monotonic()
        cached = self._deployments.get(name)
        if cached is not None and now - cached[0] < DEPLOYMENT_TTL:
            return cached[1]
        from events.deployments import get_deployment

        try:
            deployment: Deployment | None = await get_deployment(self.bus, name)
        except NotFound:
            deployment = None
        self._deployments[name] = (now, deployment)
        self._deployments.move_to_end(name)
        while len(self._deployments) > DEPLOYMENT_CACHE:
            self._deployments.popitem(last=False)
        return deployment


def _constant(run: FlowRun) -> Callable[[FlowRun], FlowRun]:
    return lambda _current: run


def dump(run: FlowRun) -> bytes:
    return run.model_dump_json().encode()


def touched(run: FlowRun) -> FlowRun:
    return run.model_copy(update={"updated": utcnow()})


async def quietly(ack: Any) -> None:
    """Ack/nak/term: a failure only means JetStream will redeliver, which is safe."""
    try:
        await ack
    except (FlowbusError, OSError, TimeoutError) as exc:
        log.warning("acknowledging a job failed: %s", exc)
    except Exception as exc:  # nats-py raises its own errors here
        log.warning("acknowledging a job failed: %r", exc)
