"""``Objects.put_once``: one pipelined window, readable as nats-py writes objects."""

from __future__ import annotations

import pytest

from events.bus import Bus
from events.errors import NotFound


async def _stored(bus: Bus) -> int:
    stream = f"OBJ_{bus.layout.results}"
    [info] = [i for i in await bus.streams() if i.config.name == stream]
    assert info.state is not None
    return int(info.state.messages)


async def test_put_once_reads_back_through_both_readers(bus: Bus) -> None:
    store = await bus.objects(bus.layout.results)
    await store.put_once("run-1.1", b'{"value": 42}')
    assert await store.get("run-1.1") == b'{"value": 42}'
    # nats-py's own reader (an ordered consumer on the chunk subject) reads it too.
    read = await store._store.get("run-1.1")
    assert read.data == b'{"value": 42}' and read.info.size == 13 and read.info.chunks == 1
    assert await store.exists("run-1.1") and await store.names() == ["run-1.1"]


async def test_writing_the_name_again_replaces_its_chunk(bus: Bus) -> None:
    store = await bus.objects(bus.layout.results)
    await store.put_once("run-2.1", b"first version")
    await store.put_once("run-2.1", b"second, longer version")
    assert await store.get("run-2.1") == b"second, longer version"
    assert await _stored(bus) == 2  # one chunk and one description: nothing left over
    await store.delete("run-2.1")
    with pytest.raises(NotFound, match=r"'run-2\.1' not found"):
        await store.get("run-2.1")
    assert await _stored(bus) == 1  # the chunk purged; the deletion marker stays


async def test_large_and_empty_objects_take_the_chunked_path(bus: Bus) -> None:
    store = await bus.objects(bus.layout.results)
    blob = bytes(range(256)) * 1000  # two chunks
    await store.put_once("big", blob)
    await store.put_once("empty", b"")
    assert await store.get("big") == blob
    assert await store.get("empty") == b""
    assert (await store._store.get_info("big")).chunks == 2
