"""Reading one run's log lines from the logs stream: one reader for the API, the UI and the CLI.

Runners publish a run's log records on ``<ns>.logs.<flow-run id>`` as JSON arrays (a
lone object is accepted). A reader is a throwaway consumer of that subject, from the
first line; it is deleted when the ``async with`` ends.

>>> async with run_log_reader(bus, run_id, API_READER) as reader:   # doctest: +SKIP
...     lines = await reader.read(1000)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from events.bus import Bus, Consumer
from events.logrecords import level_number

FETCH_BATCH = 256
# Name prefixes of the temporary log readers, by who opens them.
API_READER = "gwlogs"
"""The gateway's API (flow runs' and task runs' logs)."""
UI_READER = "gwui"
"""The gateway's UI (a run page's live logs)."""
CLI_READER = "clilogs"
"""The command line (``flow-run logs``, ``task-run logs``)."""


def log_records(data: bytes) -> list[dict[str, Any]]:
    """The records of one logs message (a JSON array; a lone object is accepted), each
    with a numeric ``level`` (:mod:`events.logrecords`; older records held names)."""
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, ValueError):
        return []
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        return []
    records = [v for v in value if isinstance(v, dict)]
    for record in records:
        record["level"] = level_number(record.get("level"))
    return records


@dataclass(frozen=True, slots=True)
class RunLogReader:
    """Reads a run's log records in order, each once."""

    consumer: Consumer

    async def read(self, limit: int, wait: float = 0.2) -> list[dict[str, Any]]:
        """The records available now, at least ``limit`` if there are that many
        (whole messages: a few more may come); waits at most ``wait`` for each batch."""
        records: list[dict[str, Any]] = []
        while len(records) < limit:
            deliveries = await self.consumer.fetch(min(FETCH_BATCH, limit - len(records)),
                                                   max_wait=wait)
            if not deliveries:
                break
            for delivery in deliveries:
                records.extend(log_records(delivery.data))
            await asyncio.gather(*(d.ack() for d in deliveries))
        return records


async def follow(reader: RunLogReader, finished: Callable[[], Awaitable[bool]],
                 stop: asyncio.Event, wait: float = 0.3) -> AsyncIterator[list[dict[str, Any]]]:
    """Batches of a run's records as they arrive, until the run is ``finished`` (asked
    whenever none is waiting) or ``stop`` is set. Once the run is finished, one more
    pass reads the lines sent just before its final state."""
    final_pass = False
    while not stop.is_set():
        records = await reader.read(FETCH_BATCH, wait=wait)
        if records:
            yield records
        elif final_pass:
            return
        else:
            final_pass = await finished()


@contextlib.asynccontextmanager
async def run_log_reader(bus: Bus, run_id: str, prefix: str) -> AsyncIterator[RunLogReader]:
    """A reader of ``run_id``'s logs from the first line; its consumer (named
    ``<prefix><random>``) is deleted on the way out."""
    consumer = await bus.consumer(
        f"{prefix}{uuid.uuid4().hex}", stream=bus.layout.logs_stream,
        filter_subjects=[bus.layout.logs_subject(run_id)], max_ack_pending=1000,
    )
    try:
        yield RunLogReader(consumer)
    finally:
        # A failed clean-up (NATS gone) must not hide the caller's own error or answer.
        with contextlib.suppress(Exception):
            await consumer.close()
            await bus.delete_consumer(bus.layout.logs_stream, consumer.durable)
