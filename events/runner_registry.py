"""The runner registry: one small record per running runner, in ``<ns>-runners``.

A runner writes its record when it starts and again on every heartbeat (its pool,
its slots and how many are in use, the runs it holds), and deletes it when it stops
cleanly. Each write carries a per-key TTL of :func:`record_ttl` seconds, so the
record of a runner that died without stopping (SIGKILL, a lost node) expires on its
own; until then a reader calls it stale once its heartbeat is older than
:meth:`RunnerRecord.stale_after`. The gateway reads the records
(``GET /api/v1/runners``, the runners page).

>>> record_ttl(2.0)
7
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
from datetime import datetime

from pydantic import BaseModel, Field, ValidationError

from events.kv import KV

# A KV key may hold only these characters; another runner id is stored under its hash.
_KEY = re.compile(r"[-_=A-Za-z0-9]{1,128}")
# Heartbeats missed before a record is stale, and before it expires.
STALE_BEATS = 2
EXPIRE_BEATS = 3
# Run ids listed in a record at most (a runner's limit can reach 1,024).
MAX_LISTED_RUNS = 100


class RunnerRecord(BaseModel):
    """What a runner tells about itself, rewritten on each heartbeat."""

    runner_id: str = Field(description="the runner's id (FLOWBUS_RUNNER_RUNNER_ID)")
    pool: str = Field(description="the work pool it serves")
    limit: int = Field(ge=1, description="flow runs it executes at once (its slots)")
    in_use: int = Field(ge=0, description="slots in use at the last heartbeat")
    runs: list[str] = Field(default_factory=list, max_length=MAX_LISTED_RUNS,
                            description="ids of the runs it held at the last heartbeat "
                                        f"(the first {MAX_LISTED_RUNS})")
    isolation: str = Field(description="how it executes flows: process or inline")
    host: str = Field(description="the host name it runs on")
    pid: int = Field(description="its process id on that host")
    started: datetime = Field(description="when it started serving")
    heartbeat: datetime = Field(description="when it last wrote this record")
    heartbeat_interval: float = Field(gt=0, description="seconds between its heartbeats")

    def stale_after(self) -> float:
        """Seconds after its heartbeat from which the runner is presumed dead."""
        return STALE_BEATS * self.heartbeat_interval + 1.0

    def is_stale(self, now: datetime) -> bool:
        return (now - self.heartbeat).total_seconds() > self.stale_after()


def record_key(runner_id: str) -> str:
    """The record's key: the runner id itself when it is a valid key, else its hash."""
    if _KEY.fullmatch(runner_id):
        return runner_id
    return "h-" + hashlib.sha256(runner_id.encode()).hexdigest()[:40]


def record_ttl(heartbeat_interval: float) -> int:
    """Whole seconds a record lives without a new heartbeat (NATS TTLs are whole seconds)."""
    return max(2, math.ceil(EXPIRE_BEATS * heartbeat_interval + 1.0))


async def write_record(kv: KV, record: RunnerRecord) -> None:
    """Store (or refresh) ``record``, expiring :func:`record_ttl` seconds from now."""
    await kv.put(record_key(record.runner_id), record.model_dump_json().encode(),
                 ttl=record_ttl(record.heartbeat_interval))


async def delete_record(kv: KV, runner_id: str) -> None:
    await kv.purge(record_key(runner_id))


async def list_records(kv: KV) -> list[RunnerRecord]:
    """Every runner's record, by pool then runner id; unreadable records are skipped."""
    keys = await kv.keys()
    entries = await asyncio.gather(*(kv.get(key) for key in keys))
    records = []
    for entry in entries:
        if entry is None:
            continue
        try:
            records.append(RunnerRecord.model_validate_json(entry.value))
        except ValidationError:
            continue
    return sorted(records, key=lambda r: (r.pool, r.runner_id))
