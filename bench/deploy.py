"""Benchmark getting code to runners, and asking for runs.

Starts its own embedded nats-server. Prints:

- bundle build (a synthetic project of N files): seconds, zip size;
- upload to ``flowbus-code``, then the skipped re-upload (digest present);
- ``fetch_bundle`` cold (download, verify, unpack) and warm (cached);
- ``run_deployment`` over NATS, request -> final state, against an in-process
  responder that completes each run as soon as it is requested: p50/p99 (the
  request side's cost, connection set-up included, not a real runner's).

Usage: python bench/deploy.py [--files 500] [--file-bytes 8192] [--runs 100]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from events.bus import Bus
from events.deployments import save_deployment
from events.embedded import EmbeddedNats
from events.records import Deployment, FlowRun, State
from events.settings import NatsSettings
from flowbus.bundles import build_bundle, fetch_bundle, upload_bundle
from flowbus.deployments import arun_deployment
from flowbus.project import BuildConfig


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _project(root: Path, files: int, size: int) -> None:
    for i in range(files):
        path = root / f"pkg{i % 20}" / f"mod{i}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        body = (f"# module {i}\n" + "VALUE = " + repr("x" * 64) + "\n") * max(1, size // 90)
        path.write_text(body[:size])


async def _responder(bus: Bus, stop: asyncio.Event) -> None:
    consumer = await bus.consumer("bench-responder", filter_subjects=[
        f"{bus.layout.events_prefix}.flowbus.deployment.run-requested"], deliver_new=True)
    kv = await bus.kv(bus.layout.flow_runs)
    while not stop.is_set():
        for delivery in await consumer.fetch(64, max_wait=0.05):
            run_id = delivery.event.data["flow_run_id"]
            run = FlowRun(id=run_id, name=run_id, flow_name="f", state=State.named("Completed"))
            await kv.put(run_id, run.model_dump_json().encode())
            await delivery.ack()


async def main(files: int, file_bytes: int, runs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp, EmbeddedNats(Path(tmp) / "nats") as server:
        settings = NatsSettings(nats_url=[server.url], namespace="bench")
        project = Path(tmp) / "project"
        _project(project, files, file_bytes)
        started = time.perf_counter()
        bundle = build_bundle(project, BuildConfig(), 1 << 30)
        built = time.perf_counter() - started
        print(f"bundle build: {files} files of {file_bytes} B in {built * 1000:.0f} ms, "
              f"zip {len(bundle.data) / 1024:.0f} KiB")
        async with await Bus.connect(settings) as bus:
            started = time.perf_counter()
            await upload_bundle(bus, bundle)
            upload = time.perf_counter() - started
            started = time.perf_counter()
            await upload_bundle(bus, bundle)
            skip = time.perf_counter() - started
            print(f"upload: {upload * 1000:.1f} ms; re-upload skipped (digest present): {skip * 1000:.1f} ms")
            cache = Path(tmp) / "cache"
            started = time.perf_counter()
            await fetch_bundle(bus, bundle.digest, cache)
            cold = time.perf_counter() - started
            started = time.perf_counter()
            await fetch_bundle(bus, bundle.digest, cache)
            warm = time.perf_counter() - started
            print(f"fetch_bundle: cold {cold * 1000:.1f} ms, warm (cached) {warm * 1e6:.0f} us")

            await save_deployment(bus, Deployment(name="bench", flow_name="f"))
            os.environ["FLOWBUS_NATS_URL"] = server.url
            os.environ["FLOWBUS_NAMESPACE"] = "bench"
            os.environ.pop("FLOWBUS_API_URL", None)
            stop = asyncio.Event()
            responder = asyncio.create_task(_responder(bus, stop))
            await asyncio.sleep(0.2)
            latencies = []
            for _ in range(runs):
                started = time.perf_counter()
                run = await arun_deployment("bench", timeout=10)
                latencies.append(time.perf_counter() - started)
                assert run.state.name == "Completed", run.state
            stop.set()
            await responder
            print(f"run_deployment over NATS (request -> final, instant responder), {runs} runs: "
                  f"p50 {statistics.median(latencies) * 1000:.1f} ms, "
                  f"p99 {_pct(latencies, 0.99) * 1000:.1f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=500)
    parser.add_argument("--file-bytes", type=int, default=8192)
    parser.add_argument("--runs", type=int, default=100)
    args = parser.parse_args()
    asyncio.run(main(args.files, args.file_bytes, args.runs))
