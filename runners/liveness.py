"""A runner's two background loops over the runs it holds.

* :meth:`Liveness.heartbeats`: every ``heartbeat_interval``, an in-progress ack for
  each held job and a touch of its record; only when both reached NATS is the
  worker's lease renewed (from the moment the heartbeat started), so a worker whose
  runner cannot reach NATS fences itself (docs/runners.md, "Timings").
* :meth:`Liveness.watch_records`: watches the flow-run records and stops a held run
  whose record went to ``Cancelling`` or to another runner.
"""

from __future__ import annotations

import asyncio
import logging
import time

from pydantic import ValidationError

from events.kv import KV
from events.records import FlowRun
from runners import suspension
from runners.metrics import RunnerMetrics
from runners.records import HeldRun, Recorder, touched
from runners.settings import RunnerSettings
from runners.types import Executor

log = logging.getLogger("flowbus.runner")


class Liveness:
    """Heartbeats and record watching for the runs in ``held`` (shared with the runner)."""

    def __init__(self, settings: RunnerSettings, executor: Executor, held: dict[str, HeldRun],
                 records: Recorder, kv: KV, metrics: RunnerMetrics) -> None:
        self.settings = settings
        self.executor = executor
        self.held = held
        self.records = records
        self.kv = kv
        self.metrics = metrics

    async def heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_interval)
            self.executor_check()
            held = [h for h in self.held.values() if not (h.signal.done() or h.finishing)]
            results = await asyncio.gather(*(self._beat(h) for h in held), return_exceptions=True)
            for result in results:
                if isinstance(result, BaseException):
                    if isinstance(result, asyncio.CancelledError):
                        raise result
                    self.metrics.heartbeat_failures.inc()
                    log.warning("heartbeat failed: %s", result)

    def executor_check(self) -> None:
        check = getattr(self.executor, "check_memory", None)
        if check is not None:
            check()

    async def _beat(self, held: HeldRun) -> None:
        since = time.monotonic()
        await held.delivery.in_progress()
        if held.finishing:
            return
        if await self.records.write(held, touched) and held.execution is not None:
            # Both the job and the record are alive as of ``since``: extend the
            # worker's lease from then (never from when the writes came back).
            held.execution.renew(since)

    async def watch_records(self) -> None:
        """Stop runs whose record went to Cancelling, was suspended from outside, or went
        to another runner."""
        while True:
            try:
                async for change in self.kv.watch(">"):
                    held = self.held.get(change.key)
                    if held is None or change.value is None:
                        continue
                    if self.records.written.get(change.key) == change.revision:
                        continue  # this runner's own write: nothing to react to
                    try:
                        run = FlowRun.model_validate_json(change.value)
                    except ValidationError:
                        continue
                    if run.state.name == "Cancelling":
                        held.stop_for("cancel")
                    elif suspension.stop_requested(run, self.settings.runner_id):
                        held.stop_for("suspend")
                    elif run.runner_id not in (None, self.settings.runner_id):
                        held.stop_for("lost")
            except Exception as exc:  # a broken watch must not end cancellation support
                log.warning("watching flow-run records failed: %r; watching again", exc)
                await asyncio.sleep(1)
