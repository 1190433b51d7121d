"""JSON on the hot path: the standard library against orjson, per call.

Times what one triggered run encodes and decodes on its way (in-process, no I/O):
a CloudEvent as the gateway publishes it (``events.cloudevent.encode``, built on
``json.dumps``), and the same body parsed back (``json.loads``, as the
orchestrator's event view does); then the same with ``orjson.dumps`` /
``orjson.loads``. The flow-run record and the job are pydantic models that
pydantic serialises in Rust already (``model_dump_json``), so they are shown for
scale only. Prints microseconds per call (median of ``--rounds``) and the load
average. Without orjson installed, only the standard library is measured.

Usage: python bench/codecs.py [--calls 20000] [--rounds 5]
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from events.cloudevent import CloudEvent, encode, to_dict
from events.records import FlowRun, State


def per_call(fn: Callable[[], Any], calls: int, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        begin = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - begin) / calls * 1e6)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, load average before: "
          + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    event = CloudEvent.create("com.example.order.created", source="/shop/orders",
                              subject="order-1234",
                              data={"order": 1234, "items": [{"sku": "A-1", "qty": 2}],
                                    "customer": {"id": "c-9", "tier": "gold"}, "total": 99.5})
    body = encode(event, 1 << 20)
    as_dict = to_dict(event)
    now = datetime.now(UTC)
    run = FlowRun(id="r" * 32, name="bench-run", flow_name="bench", deployment_id="d" * 32,
                  deployment_name="bench", work_pool="default", parameters={"x": 1},
                  tags=["a"], state=State(type="SCHEDULED", name="Scheduled", timestamp=now),
                  expected_start_time=now, created=now, updated=now,
                  idempotency_key="k", triggering_event=as_dict)
    record = run.model_dump_json().encode()
    rows: list[tuple[str, Callable[[], Any]]] = [
        ("CloudEvent encode (events.cloudevent.encode)", lambda: encode(event, 1 << 20)),
        ("  of which json.dumps of the dict", lambda: json.dumps(
            as_dict, separators=(",", ":"), ensure_ascii=False).encode()),
        ("CloudEvent body json.loads", lambda: json.loads(body)),
        ("flow-run record model_dump_json (pydantic)", run.model_dump_json),
        ("flow-run record model_validate_json (pydantic)",
         lambda: FlowRun.model_validate_json(record)),
    ]
    try:
        import orjson
    except ImportError:
        print("orjson is not installed: only the standard library is measured")
    else:
        rows[2:2] = [("  the same with orjson.dumps", lambda: orjson.dumps(as_dict))]
        rows[4:4] = [("  the same with orjson.loads", lambda: orjson.loads(body))]
    print(f"{len(body)}-byte event, {len(record)}-byte record; us per call, median of "
          f"{args.rounds} rounds of {args.calls}:")
    for name, fn in rows:
        print(f"  {name:<50} {per_call(fn, args.calls, args.rounds):8.2f}")
    print("load average after: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))


if __name__ == "__main__":
    main()
