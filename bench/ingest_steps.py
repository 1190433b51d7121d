"""The gateway's own Python work per ingested event, step by step, in thread CPU.

Thread CPU is what the other processes on a shared machine disturb least::

    python bench/ingest_steps.py [--rounds 5]

For a batch of 100 events and for a single event, as ``POST /events`` does them:
parsing the JSON within its limits, decoding (validation, ``time`` filled in with the
receive time) and encoding for NATS with the message id. Prints the median and the
lowest of the rounds, and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from events import jsonlimits
from events.bus import msg_id
from events.cloudevent import CloudEvent, decode, decode_batch, encode


def event(i: int) -> dict[str, Any]:
    return {"specversion": "1.0", "id": f"run-{i}", "source": "/bench", "type": "bench.order.created",
            "subject": f"orders/{i}", "data": {"order": i, "amount": 1999, "currency": "EUR"}}


def encoded(events: list[CloudEvent]) -> list[tuple[bytes, str]]:
    return [(encode(e, 1 << 20), msg_id(e)) for e in events]


def measure(name: str, step: Callable[[], object], per: int, calls: int, rounds: int) -> None:
    figures = []
    for _ in range(rounds):
        start = time.thread_time()
        for _ in range(calls):
            step()
        figures.append(1e6 * (time.thread_time() - start) / calls / per)
    print(f"{name:34s} median {statistics.median(figures):6.2f} us, lowest {min(figures):6.2f} us")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds of each step")
    args = parser.parse_args()
    batch = json.dumps([event(i) for i in range(100)]).encode()
    one = json.dumps(event(1)).encode()
    events = decode_batch(batch, received=datetime.now(UTC))
    print(f"load average: {os.getloadavg()[0]:.2f}; per event, thread CPU")
    measure("batch: JSON parse with limits", lambda: jsonlimits.loads(batch), 100, 200, args.rounds)
    measure("batch: decode, time filled", lambda: decode_batch(batch, received=datetime.now(UTC)),
            100, 200, args.rounds)
    measure("batch: encode and message id", lambda: encoded(events), 100, 200, args.rounds)
    measure("single: decode, time filled", lambda: decode(one, received=datetime.now(UTC)),
            1, 10_000, args.rounds)
    measure("single: encode and message id", lambda: encoded(events[:1]), 1, 10_000, args.rounds)


if __name__ == "__main__":
    main()
