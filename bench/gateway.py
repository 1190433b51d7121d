"""Benchmark of the gateway over loopback: single events/s, latency at 1,000/s, batch events/s.

Starts its own embedded NATS and a gateway (auth on, rate limit off) in this
process, and drives it from a separate load-generator process (aiohttp client)::

    python bench/gateway.py [--seconds 5] [--concurrency 64] [--batch 100] [--workers 1]
                            [--phases single,latency,batch] [--uvloop]

Aims on 2 cores, load generator included: >= 3,000 single events/s, p99 <= 10 ms
at 1,000 events/s, >= 20,000 events/s in batches.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from events.cloudevent import BATCH_MAX_EVENTS  # noqa: E402

KEY = "bench-admin-key-" + "0" * 24
STRUCTURED = {"Content-Type": "application/cloudevents+json", "Authorization": f"Bearer {KEY}"}
BATCH = {"Content-Type": "application/cloudevents-batch+json", "Authorization": f"Bearer {KEY}"}


def event(run: str, i: int) -> dict[str, Any]:
    return {"specversion": "1.0", "id": f"{run}-{i}", "source": "/bench", "type": "bench.order.created",
            "subject": f"orders/{i}", "data": {"order": i, "amount": 1999, "currency": "EUR"}}


# --- the load generator (a separate process) ----------------------------------------------


async def single_throughput(session: Any, url: str, seconds: float, concurrency: int) -> float:
    run = uuid.uuid4().hex[:8]
    deadline = time.perf_counter() + seconds
    counter = iter(range(10**9))
    done = 0

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            body = json.dumps(event(run, next(counter))).encode()
            async with session.post(url + "/events", data=body, headers=STRUCTURED) as r:
                await r.read()
                if r.status != 202:
                    raise RuntimeError(f"status {r.status}: {await r.text()}")
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done / (time.perf_counter() - start)


async def fixed_rate_latency(session: Any, url: str, seconds: float, rate: float) -> list[float]:
    """Open loop: send at a fixed rate whatever the answers do, time each request."""
    run = uuid.uuid4().hex[:8]
    latencies: list[float] = []
    tasks = []

    async def one(i: int) -> None:
        body = json.dumps(event(run, i)).encode()
        start = time.perf_counter()
        async with session.post(url + "/events", data=body, headers=STRUCTURED) as r:
            await r.read()
            if r.status != 202:
                raise RuntimeError(f"status {r.status}")
        latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    total = int(seconds * rate)
    for i in range(total):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i)))
    await asyncio.gather(*tasks)
    return latencies


async def batch_throughput(session: Any, url: str, seconds: float, batch: int, concurrency: int) -> float:
    run = uuid.uuid4().hex[:8]
    deadline = time.perf_counter() + seconds
    counter = iter(range(10**9))
    done = 0

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            body = json.dumps([event(run, next(counter)) for _ in range(batch)]).encode()
            async with session.post(url + "/events", data=body, headers=BATCH) as r:
                await r.read()
                if r.status != 202:
                    raise RuntimeError(f"status {r.status}: {await r.text()}")
            done += batch

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done / (time.perf_counter() - start)


def mark(phase: str) -> None:
    """Tell the gateway's process where a phase starts, so it can measure its own CPU."""
    print(f"phase {phase}", flush=True)


PHASES = ("single", "latency", "batch")


async def load(url: str, seconds: float, concurrency: int, batch: int,
               batch_concurrency: int, phases: list[str]) -> dict[str, float]:
    import aiohttp

    out: dict[str, float] = {}
    connector = aiohttp.TCPConnector(limit=concurrency * 2)
    async with aiohttp.ClientSession(connector=connector) as session:
        await single_throughput(session, url, 1.0, concurrency)  # warm up
        if "single" in phases:
            mark("single")
            out["single_per_s"] = await single_throughput(session, url, seconds, concurrency)
            mark("single-end")
        if "latency" in phases:
            mark("latency")
            latencies = sorted(await fixed_rate_latency(session, url, seconds, 1000.0))
            mark("latency-end")
            q = statistics.quantiles(latencies, n=100)
            out.update(p50_ms=q[49] * 1000, p99_ms=q[98] * 1000,
                       latency_samples=len(latencies))
        if "batch" in phases:
            mark("batch")
            out["batch_events_per_s"] = await batch_throughput(
                session, url, seconds, batch, batch_concurrency)
            mark("batch-end")
    return out


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --- the system under test (this process) --------------------------------------------------


async def drive(url: str, args: argparse.Namespace) -> tuple[dict[str, float], dict[str, float]]:
    """Run the load generator against ``url``; its results and this process's CPU at each phase."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--load", url, "--seconds", str(args.seconds),
        "--concurrency", str(args.concurrency), "--batch", str(args.batch),
        "--batch-concurrency", str(args.batch_concurrency), "--phases", ",".join(args.phases),
        stdout=subprocess.PIPE,
    )
    assert process.stdout is not None
    marks: dict[str, float] = {}
    result: dict[str, float] = {}
    async for raw in process.stdout:
        line = raw.decode().strip()
        if line.startswith("phase "):
            marks[line[6:]] = cpu_seconds()
        elif line:
            result = dict(json.loads(line))
    if await process.wait() != 0 or not result:
        raise SystemExit(f"load generator failed ({process.returncode})")
    return result, marks


async def wait_ready(url: str) -> None:
    import aiohttp

    for _ in range(400):
        try:
            async with aiohttp.ClientSession() as s, s.get(url + "/readyz") as r:
                if r.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.05)
    raise SystemExit("the gateway workers did not become ready")


async def run_gateway(args: argparse.Namespace) -> dict[str, float]:
    from events.bus import Bus
    from events.embedded import EmbeddedNats, free_port
    from events.settings import NatsSettings
    from gateway.service import running
    from gateway.settings import GatewaySettings
    from gateway.workers import serve_workers

    with tempfile.TemporaryDirectory(prefix="flowbus-bench-") as tmp, EmbeddedNats(tmp) as server:
        nats_settings = NatsSettings(nats_url=[server.url], namespace="bench")
        settings = GatewaySettings(port=0, admin_api_key=KEY, rate_limit_per_second=0)
        if args.workers > 1:
            settings = settings.model_copy(update={"port": free_port()})
            stop = asyncio.Event()
            workers = asyncio.create_task(
                serve_workers(nats_settings, settings, args.workers, stop=stop))
            url = f"http://{settings.host}:{settings.port}"
            await wait_ready(url)
            try:
                result, _ = await drive(url, args)
            finally:
                stop.set()
                await workers
            return result
        async with await Bus.connect(nats_settings) as bus, running(bus, settings) as gw:
            result, marks = await drive(gw.url, args)
        # The gateway's own CPU per event (this process: HTTP server and NATS client).
        for phase, rate in (("single", "single_per_s"), ("batch", "batch_events_per_s")):
            if phase in marks:
                result[f"cpu_us_{phase}"] = 1e6 * (marks[f"{phase}-end"] - marks[phase]) / (
                    result[rate] * args.seconds)
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each phase")
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight (single)")
    parser.add_argument("--batch", type=int, default=BATCH_MAX_EVENTS,
                        help="events per batch request (at most the gateway's limit)")
    parser.add_argument("--batch-concurrency", type=int, default=4,
                        help="batch requests in flight")
    parser.add_argument("--workers", type=int, default=1,
                        help="gateway processes on the port (flowbus gateway --workers)")
    parser.add_argument("--phases", type=lambda s: s.split(","), default=list(PHASES),
                        help="which phases to run, comma-separated (default: "
                        f"{','.join(PHASES)}); one alone is what a profiler should sample")
    parser.add_argument("--uvloop", action="store_true",
                        help="run the gateway (not the load generator) on uvloop's event loop")
    parser.add_argument("--load", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    unknown = set(args.phases) - set(PHASES)
    if unknown:
        parser.error(f"unknown phase(s) {', '.join(sorted(unknown))}; choose from {', '.join(PHASES)}")
    if args.load:
        result = asyncio.run(load(args.load, args.seconds, args.concurrency, args.batch,
                                  args.batch_concurrency, args.phases))
        print(json.dumps(result))
        return
    logging.basicConfig(level=logging.WARNING)
    before = os.getloadavg()
    if args.uvloop:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    r = asyncio.run(run_gateway(args))
    print(f"cores available:                {os.cpu_count()}")
    print(f"load average before / after:    {before[0]:.2f} / {os.getloadavg()[0]:.2f}")
    if "single_per_s" in r:
        print(f"single-event POSTs per second:  {r['single_per_s']:,.0f}   (aim >= 3,000)")
    if "p50_ms" in r:
        print(f"latency at 1,000 events/s:      p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms"
              f"   (aim p99 <= 10 ms; {r['latency_samples']:,.0f} samples)")
    if "batch_events_per_s" in r:
        print(f"events per second in batches:   {r['batch_events_per_s']:,.0f}   "
              f"(batches of {args.batch}, {args.batch_concurrency} in flight; aim >= 20,000)")
    print(f"gateway processes:              {args.workers}, "
          f"{'uvloop' if args.uvloop else 'asyncio'} event loop")
    for phase, what in (("single", "single"), ("batch", "in batches")):
        if f"cpu_us_{phase}" in r:
            print(f"gateway CPU per event, {what + ':':12s}{r[f'cpu_us_{phase}']:.0f} us "
                  "(its process alone)")


if __name__ == "__main__":
    main()
