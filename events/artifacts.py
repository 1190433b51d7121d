"""Artifacts in ``flowbus-artifacts``: the record, its keys, and the queries the API makes.

Every artifact is stored under ``id.<artifact id>``; an artifact with a key is also
pointed at by ``key.<key>`` (the latest one with that key), so ``Artifact.get(key)``
costs two reads. The history of a key is every artifact with that key, newest first.

>>> artifact_key("0b6e...")
'id.0b6e...'
"""

from __future__ import annotations

import asyncio
import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from events.kv import KV

KEY_PATTERN = r"^[a-z0-9-]{1,200}$"
_KEY = re.compile(KEY_PATTERN)
ArtifactType = Literal["markdown", "table", "link", "image", "progress", "result"]
MAX_ARTIFACT_BYTES = 512 * 1024


class ArtifactRecord(BaseModel):
    """One artifact, as stored and as the API returns it."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="artifact id (a UUID)")
    key: str | None = Field(default=None, pattern=KEY_PATTERN,
                            description="lowercase letters, digits and dashes; groups versions")
    type: str = Field(description="markdown, table, link, image or progress")
    data: Any = Field(description="the artifact's content")
    description: str | None = Field(default=None, description="markdown describing it")
    flow_run_id: str | None = Field(default=None, description="the flow run that created it")
    task_run_id: str | None = Field(default=None, description="the task run that created it")
    created: datetime = Field(description="when it was created")
    updated: datetime = Field(description="when it last changed")


def artifact_key(artifact_id: str) -> str:
    return f"id.{artifact_id}"


def latest_key(key: str) -> str:
    return f"key.{key}"


def valid_key(key: str) -> bool:
    return _KEY.fullmatch(key) is not None


async def save_artifact(kv: KV, record: ArtifactRecord) -> None:
    """Store ``record`` and, when it has a key, point the key at it."""
    await kv.put(artifact_key(record.id), record.model_dump_json().encode())
    if record.key:
        await kv.put(latest_key(record.key), record.id.encode())


async def get_artifact(kv: KV, artifact_id: str) -> ArtifactRecord | None:
    entry = await kv.get(artifact_key(artifact_id))
    return None if entry is None else ArtifactRecord.model_validate_json(entry.value)


async def latest_artifact(kv: KV, key: str) -> ArtifactRecord | None:
    """The latest artifact with ``key``, or None."""
    pointer = await kv.get(latest_key(key))
    return None if pointer is None else await get_artifact(kv, pointer.value.decode())


async def list_artifacts(
    kv: KV, *, key: str | None = None, flow_run_id: str | None = None,
    task_run_id: str | None = None, type: str | None = None,
) -> list[ArtifactRecord]:
    """Every artifact matching all the given filters, newest first."""
    ids = [k for k in await kv.keys() if k.startswith("id.")]
    entries = await asyncio.gather(*(kv.get(k) for k in ids))
    out = []
    for entry in entries:
        if entry is None:
            continue
        record = ArtifactRecord.model_validate_json(entry.value)
        if ((key is None or record.key == key)
                and (flow_run_id is None or record.flow_run_id == flow_run_id)
                and (task_run_id is None or record.task_run_id == task_run_id)
                and (type is None or record.type == type)):
            out.append(record)
    out.sort(key=lambda r: (r.created, r.id), reverse=True)
    return out
