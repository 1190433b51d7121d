"""Reads on a 3-node JetStream cluster: what a replica answers, and what the leader does.

A KV direct get may be answered by a follower that has not applied the latest write;
the runner drops a job only on a ``latest`` read (events.kv), which must therefore
see every acknowledged write at once.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from events.bus import Bus
from events.errors import BusUnavailable
from events.settings import NatsSettings
from tests.chaos.harness import NatsNodes

pytestmark = [pytest.mark.chaos]


async def _connect(settings: NatsSettings) -> Bus:
    for _ in range(150):  # the cluster elects its JetStream meta leader first
        try:
            return await Bus.connect(settings)
        except BusUnavailable:
            await asyncio.sleep(0.2)
    raise RuntimeError("the 3-node cluster did not come up")


@pytest.mark.timeout(300)
async def test_a_latest_read_sees_every_acknowledged_write_on_a_cluster(tmp_path: Path) -> None:
    nodes = NatsNodes(tmp_path, 3)
    nodes.start_all()
    try:
        bus = await _connect(NatsSettings(nats_url=nodes.urls, namespace="reads",
                                          stream_replicas=3))
        try:
            kv = await bus.kv(bus.layout.flow_runs)
            unseen = []
            for i in range(200):
                key = f"run{i}"
                first = await kv.create(key, b"created")
                created = await kv.get(key, latest=True)
                second = await kv.cas(key, b"updated", first)
                updated = await kv.get(key, latest=True)
                if created is None or (created.value, created.revision) != (b"created", first):
                    unseen.append((key, "create", created))
                if updated is None or (updated.value, updated.revision) != (b"updated", second):
                    unseen.append((key, "update", updated))
            assert unseen == []
            # keys() lists from the leader too: every key written, none missing.
            assert sorted(await kv.keys()) == sorted(f"run{i}" for i in range(200))
        finally:
            await bus.close()
    finally:
        nodes.stop_all()
