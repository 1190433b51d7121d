"""Flow-run input: the values stored in ``<ns>-flow-run-input`` (Prefect's FlowRunInput).

One key per input, ``<flow-run-id>.<key>``; the value is a :class:`StoredInput`
envelope (the JSON value, who sent it, when). The SDK's ``flowbus.input`` and the
resume path (:mod:`events.pauses`) both read and write through here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from events.errors import AlreadyExists
from events.kv import KV
from events.records import utcnow

MAX_INPUT_BYTES = 256 * 1024


class StoredInput(BaseModel):
    """The value of one run-input key."""

    model_config = ConfigDict(extra="forbid")

    key: str
    value: Any = Field(description="the input, as JSON")
    sender: str | None = Field(default=None, description="who sent it, e.g. flowbus.flow-run.<id>")
    created: datetime = Field(default_factory=utcnow)


def _key(flow_run_id: str, key: str) -> str:
    from events.pauses import input_key

    return input_key(flow_run_id, key)


def encode(key: str, value: Any, sender: str | None) -> bytes:
    """The stored bytes of an input; ``ValueError`` if too large or not JSON."""
    data = StoredInput(key=key, value=value, sender=sender).model_dump_json().encode()
    if len(data) > MAX_INPUT_BYTES:
        raise ValueError(f"a run input is at most {MAX_INPUT_BYTES} bytes stored, got {len(data)}")
    return data


async def put_input(kv: KV, flow_run_id: str, key: str, value: Any, *,
                    sender: str | None = None, create: bool = False) -> None:
    """Store an input (``create``: only if the key is new; ``AlreadyExists`` otherwise)."""
    data = encode(key, value, sender)
    if create:
        await kv.create(_key(flow_run_id, key), data)
    else:
        await kv.put(_key(flow_run_id, key), data)


async def get_input(kv: KV, flow_run_id: str, key: str) -> StoredInput | None:
    entry = await kv.get(_key(flow_run_id, key))
    if entry is None:
        return None
    try:
        return StoredInput.model_validate_json(entry.value)
    except ValidationError:
        return None


async def delete_input(kv: KV, flow_run_id: str, key: str) -> None:
    await kv.delete(_key(flow_run_id, key))


async def list_inputs(kv: KV, flow_run_id: str, prefix: str = "",
                      exclude: set[str] | frozenset[str] = frozenset()) -> list[StoredInput]:
    """The run's inputs whose key starts with ``prefix``, oldest first."""
    import asyncio

    _key(flow_run_id, "x")  # validates the id's shape through the key rule
    found: list[tuple[int, StoredInput]] = []
    done = asyncio.Event()
    watch = kv.watch(f"{flow_run_id}.*", on_current=done.set)

    async def collect() -> None:
        async for change in watch:
            if change.value is not None:
                try:
                    stored = StoredInput.model_validate_json(change.value)
                except ValidationError:
                    continue
                if stored.key.startswith(prefix) and stored.key not in exclude:
                    found.append((change.revision, stored))
            if done.is_set():
                return

    task = asyncio.create_task(collect())
    waiter = asyncio.create_task(done.wait())
    try:
        await asyncio.wait({task, waiter}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            await asyncio.wait({task}, timeout=0.05)
    finally:
        for t in (task, waiter):
            t.cancel()
        await asyncio.gather(task, waiter, return_exceptions=True)
    return [stored for _, stored in sorted(found, key=lambda item: item[0])]


__all__ = [
    "MAX_INPUT_BYTES",
    "AlreadyExists",
    "StoredInput",
    "delete_input",
    "encode",
    "get_input",
    "list_inputs",
    "put_input",
]
