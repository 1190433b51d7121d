"""The runner's own record in the runner registry (:mod:`events.runner_registry`).

Written when the runner starts serving and on every heartbeat, with the slots in
use and the runs held; deleted when it stops cleanly. A failed write is logged and
tried again at the next beat: the registry is for people watching, never a reason
to stop serving.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable
from datetime import datetime

from events.kv import KV
from events.records import utcnow
from events.runner_registry import MAX_LISTED_RUNS, RunnerRecord, delete_record, write_record
from runners.settings import RunnerSettings

log = logging.getLogger("flowbus.runner")

_DELETE_TIMEOUT = 2.0


class Registration:
    """Keeps one runner's record fresh; ``in_use`` and ``held`` read its current load."""

    def __init__(self, kv: KV, settings: RunnerSettings, in_use: Callable[[], int],
                 held: Callable[[], list[str]], clock: Callable[[], datetime] = utcnow) -> None:
        self.kv = kv
        self.settings = settings
        self._in_use = in_use
        self._held = held
        self._clock = clock
        self._started = clock()

    def record(self) -> RunnerRecord:
        s = self.settings
        return RunnerRecord(
            runner_id=s.runner_id, pool=s.pool, limit=s.limit, in_use=self._in_use(),
            runs=sorted(self._held())[:MAX_LISTED_RUNS], isolation=s.isolation,
            host=socket.gethostname()[:255], pid=os.getpid(), started=self._started,
            heartbeat=self._clock(), heartbeat_interval=s.heartbeat_interval,
        )

    async def write(self) -> None:
        try:
            await asyncio.wait_for(write_record(self.kv, self.record()),
                                   self.settings.heartbeat_interval + _DELETE_TIMEOUT)
        except Exception as exc:  # nats-py raises its own errors; none may stop the runner
            log.warning("writing the runner's registry record failed: %r", exc)

    async def beats(self) -> None:
        """Rewrite the record every heartbeat interval (the first write is :meth:`write`)."""
        while True:
            await asyncio.sleep(self.settings.heartbeat_interval)
            await self.write()

    async def remove(self) -> None:
        """Delete the record (a clean stop); bounded, and never raises."""
        try:
            await asyncio.wait_for(delete_record(self.kv, self.settings.runner_id),
                                   _DELETE_TIMEOUT)
        except Exception as exc:
            log.warning("deleting the runner's registry record failed: %r", exc)
