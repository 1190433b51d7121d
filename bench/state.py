"""Benchmark run-time state: JetStream (a runner's view) next to local disk (no server).

Starts its own embedded nats-server with JetStream on a free port, so it needs
nothing running. For each store it times, one call at a time, through the SDK's
own code paths:

- cache hit: the task engine's cache lookup of a small result (a KV read);
- result write: persisting a small result (an object-store put / a file write);
- variable read: ``Variable.get`` (a KV read / a file read).

and prints p50 and p99 in milliseconds, with the machine's load average.

Usage: python bench/state.py [--samples N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from events.embedded import EmbeddedNats
from flowbus import _remote
from flowbus._run_support import cache_lookup
from flowbus.results import default_cache_store, encode_cache_record, resolve_result_store
from flowbus.serializers import resolve_serializer
from flowbus.variables import Variable


def _timed(fn: Callable[[int], object], samples: int) -> tuple[float, float]:
    for i in range(min(50, samples)):  # warm up connections and caches
        fn(i)
    times = []
    for i in range(samples):
        start = time.perf_counter()
        fn(i)
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.99) - 1]


def _measure(samples: int) -> dict[str, tuple[float, float]]:
    serializer = resolve_serializer("json")
    payload = serializer.dumps({"rows": list(range(20)), "name": "result"})
    default_cache_store().write("bench-key", encode_cache_record(serializer, payload, None))
    Variable.set("bench-variable", {"threshold": 10}, overwrite=True)
    results = resolve_result_store(None)

    def hit(_: int) -> object:
        found, value = cache_lookup("bench-key")
        assert found
        return value

    return {
        "cache hit": _timed(hit, samples),
        "result write": _timed(lambda i: results.write(f"bench-{i}", payload), samples),
        "variable read": _timed(lambda _: Variable.get("bench-variable"), samples),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        os.environ["FLOWBUS_HOME"] = home
        _remote.install(None)
        local = _measure(args.samples)
        with EmbeddedNats() as server:
            # As a process with FLOWBUS_NATS_URL set (it creates the layout on connect).
            os.environ["FLOWBUS_NATS_URL"], os.environ["FLOWBUS_NAMESPACE"] = server.url, "bench"
            _remote.reset()
            try:
                remote = _measure(args.samples)
            finally:
                _remote.install(None)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"run-time state, {args.samples} calls each (load average {load}; {os.cpu_count()} cpus)")
    print(f"{'operation':<15} {'JetStream p50':>14} {'p99':>8} {'local disk p50':>15} {'p99':>8}")
    for name in remote:
        (rp50, rp99), (lp50, lp99) = remote[name], local[name]
        print(f"{name:<15} {rp50:>11.3f} ms {rp99:>5.3f} ms {lp50:>12.3f} ms {lp99:>5.3f} ms")


if __name__ == "__main__":
    main()
