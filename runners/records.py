"""The records of the runs a runner holds: compare-and-set writes and announcements.

Every change to a held run's record is a compare-and-set on the revision the runner
last wrote or read (:meth:`Recorder.write`). When it fails, the record is read
again: a run that another runner (or an operator) took, or that became final
elsewhere, is no longer ours and its attempt is stopped; a run that became
``Cancelling`` is cancelled. State changes are announced as
``flowbus.flow-run.<State>`` events whose data is the record (plus ``deployment``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from events.bus import Bus, Delivery
from events.cloudevent import CloudEvent
from events.errors import FlowbusError, NotFound, TransitionRejected, UpdateConflict
from events.kv import KV
from events.records import Deployment, FlowRun, utcnow
from runners.types import Execution, FlowInfo, RunSpec

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

    def __init__(self, bus: Bus, kv: KV, runner_id: str) -> None:
        self.bus = bus
        self.kv = kv
        self.runner_id = runner_id
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
            try:
                held.revision = await self.kv.cas(held.run.id, dump(new), held.revision)
            except UpdateConflict:
                if not await self.refresh(held):
                    return False
                continue
            held.run = new
            if announce:
                await self.announce(new, held.deployment)
            return True
        return False

    async def refresh(self, held: HeldRun) -> bool:
        """Re-read a held run's record after a lost CAS; False (and stop it) if not ours."""
        entry = await self.kv.get(held.run.id)
        if entry is None:
            held.stop_for("lost")
            return False
        run = FlowRun.model_validate_json(entry.value)
        if run.runner_id == self.runner_id and run.state.is_final() and held.finishing:
            return False  # our own final write won the race; nothing is lost
        if run.runner_id != self.runner_id or run.state.is_final():
            log.warning("flow run %s was taken over (%s, runner %s): stopping it",
                        run.id, run.state.name, run.runner_id)
            held.stop_for("lost")
            return False
        held.run, held.revision = run, entry.revision
        if run.state.name == "Cancelling":
            held.stop_for("cancel")
        return True

    async def announce(self, run: FlowRun, deployment: Deployment | None) -> None:
        await self.announce_many([run], deployment)

    async def announce_many(self, runs: list[FlowRun], deployment: Deployment | None) -> None:
        extra = {"deployment": deployment.model_dump(mode="json")} if deployment else {}
        events = [
            CloudEvent.create(
                f"flowbus.flow-run.{run.state.name}", source=SOURCE,
                subject=f"flowbus.flow-run.{run.id}",
                data={**run.model_dump(mode="json"), **extra},
            )
            for run in runs
        ]
        try:
            await self.bus.publish_many(events)
        except FlowbusError as exc:
            log.warning("could not announce flow run %s: %s", runs[0].id, exc)

    async def log(self, flow_run_id: str, level: int, message: str) -> None:
        record = [{"flow_run_id": flow_run_id, "task_run_id": None, "name": "flowbus.runner",
                   "level": logging.getLevelName(level), "message": message,
                   "timestamp": utcnow().isoformat()}]
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


def dump(run: FlowRun) -> bytes:
    return run.model_dump_json().encode()
