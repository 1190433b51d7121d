"""Deployment schedules: the next run of each schedule, created just in time.

Each tick, every active schedule of every unpaused deployment has exactly its next
slot's run: created once (the id derives from deployment, schedule and slot time,
so a restart or a second orchestrator never doubles it), Scheduled for the slot,
its job published by the run tracker when due. Nothing is created further ahead.

After downtime (or when a deployment is first seen), ``catchup`` decides about the
slots that passed: ``skip`` creates nothing for them; ``latest`` creates one run
for the most recent missed slot (not before the deployment existed), never a flood.
"""

from __future__ import annotations

import logging
from datetime import datetime

from events.errors import FlowbusError
from events.records import Deployment, flow_run_id_for
from events.schedules import Schedule
from orchestrator.creation import RunCreator, RunRequest
from orchestrator.deployments import DeploymentCatalog
from orchestrator.dispatch import refusal
from orchestrator.types import Clock

log = logging.getLogger("flowbus.orchestrator.scheduler")


def schedule_run_id(deployment: Deployment, schedule: Schedule, slot: datetime) -> str:
    return flow_run_id_for("schedule", deployment.id, schedule.key(), slot.isoformat())


class Scheduler:
    """Creates the runs of deployment schedules."""

    def __init__(
        self, catalog: DeploymentCatalog, creator: RunCreator, clock: Clock
    ) -> None:
        self._catalog = catalog
        self._creator = creator
        self._clock = clock
        # (deployment id, schedule key) -> the slot whose run exists
        self._done: dict[tuple[str, str], datetime] = {}
        self._caught_up: set[tuple[str, str]] = set()

    async def tick(self) -> None:
        now = self._clock()
        live: set[tuple[str, str]] = set()
        for name, schedules in list(self._catalog.schedules.items()):
            deployment = self._catalog.get(name)
            if deployment is None or deployment.paused:
                continue
            for schedule in schedules:
                if not schedule.active:
                    continue
                key = (deployment.id, schedule.key())
                live.add(key)
                try:
                    await self._schedule(deployment, schedule, key, now)
                except FlowbusError as exc:
                    log.warning("schedule of %s: %s", name, exc)
        for key in set(self._done) - live:
            del self._done[key]
        self._caught_up &= live

    async def _schedule(
        self, deployment: Deployment, schedule: Schedule, key: tuple[str, str], now: datetime
    ) -> None:
        if key not in self._caught_up:
            self._caught_up.add(key)
            if schedule.catchup == "latest":
                latest = schedule.latest_at_or_before(now)
                if latest is not None and latest >= deployment.created:
                    await self._create(deployment, schedule, latest)
        slot = schedule.next_after(now)
        if slot is None or self._done.get(key) == slot:
            return
        await self._create(deployment, schedule, slot)
        self._done[key] = slot

    async def _create(self, deployment: Deployment, schedule: Schedule, slot: datetime) -> None:
        run_id = schedule_run_id(deployment, schedule, slot)
        parameters = {**deployment.parameters, **schedule.parameters}
        await self._creator.create(
            RunRequest(
                flow_run_id=run_id,
                deployment=deployment,
                origin="schedule",
                parameters=parameters,
                refused=refusal(deployment, parameters),
                expected_start_time=slot,
                idempotency_key=f"schedule:{deployment.id}:{schedule.key()}:{slot.isoformat()}",
                tags=["auto-scheduled"],
            )
        )
