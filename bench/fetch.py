"""How long a message waits for a consumer that fetches the way runners do.

Starts its own embedded nats-server. A consumer loops ``fetch(free, max_wait)``
as a runner's job loop does (``--free`` slots, nothing in flight); a publisher
sends one message at a random moment, waits until it was handed out, pauses a
random while, and so on. Prints published -> handed out to the fetch's caller:
p50 / p90 / p99 / max, and the load average.

Usage: python bench/fetch.py [--messages 200] [--free 8] [--max-wait 0.25]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from events.bus import Bus
from events.embedded import EmbeddedNats
from events.settings import NatsSettings


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main(args: argparse.Namespace) -> None:
    print(f"cpus {os.cpu_count()}, load average before: {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp, EmbeddedNats(Path(tmp) / "nats") as server:
        settings = NatsSettings(nats_url=[server.url], namespace=f"f{uuid.uuid4().hex[:6]}")
        async with await Bus.connect(settings) as bus:
            subject = bus.layout.runs_subject("bench")
            consumer = await bus.consumer("bench", stream=bus.layout.runs_stream,
                                          filter_subjects=[subject])
            handed: asyncio.Queue[float] = asyncio.Queue()

            async def loop() -> None:
                while True:
                    for delivery in await consumer.fetch(args.free, args.max_wait):
                        handed.put_nowait(time.perf_counter())
                        await delivery.ack()

            task = asyncio.create_task(loop())
            rng = random.Random(1)
            waits = []
            try:
                for i in range(args.messages):
                    await asyncio.sleep(rng.uniform(0, args.max_wait * 1.5))
                    sent = time.perf_counter()
                    await bus.publish_raw(subject, b"{}", {"Nats-Msg-Id": f"m{i}"})
                    waits.append((await asyncio.wait_for(handed.get(), 30) - sent) * 1000)
            finally:
                task.cancel()
    print(f"{args.messages} messages, fetch({args.free}, max_wait={args.max_wait}): "
          f"published -> handed out p50 {pct(waits, 0.5):.2f} ms, p90 {pct(waits, 0.9):.2f} ms, "
          f"p99 {pct(waits, 0.99):.2f} ms, max {max(waits):.2f} ms")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--free", type=int, default=8, help="free slots asked for per fetch")
    parser.add_argument("--max-wait", type=float, default=0.25, help="fetch wait, seconds")
    asyncio.run(main(parser.parse_args()))
