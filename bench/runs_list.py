"""Benchmark listing flow runs with many stored: the REST list and the UI's run list.

Starts its own embedded nats-server, stores N flow-run records (default 100,000: 20
deployments, 5 flows, a mix of states and tags, created over 7 days), then starts
``flowbus gateway`` as its own process and measures, one request at a time:

- how long the gateway takes to become able to list (its run index loads the bucket);
- p50/p99 of ``GET /api/v1/flow-runs?limit=50`` with no filter and with each filter
  (state, deployment, flow, tag, time range, text, a combination, a deep page), with
  texts whose grams are all common (``bench-00``, in every run; ``team-4 bench``, in a
  seventh) alone and with a flow or a time range;
- p50/p99 of the UI's run list page ``GET /ui/runs`` (rendered HTML);
  (the API refuses a text of under 3 characters, 422: the index alone still measures one);
- the gateway's resident memory with an empty bucket and with N runs;
- the run index alone, in this process: its load time, its memory (traced
  allocations) and p50/p99 of each query, which is what the gateway adds per request
  on top of HTTP, the KV revision check and JSON, and the p50 of the CPU time each
  query took (on a loaded machine, less noisy than the wall clock).

Usage: python bench/runs_list.py [--runs N] [--requests N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from events.bus import Bus
from events.embedded import EmbeddedNats, free_port
from events.records import FlowRun, State
from events.settings import NatsSettings
from gateway.runindex import RunFilter, RunIndex

NOW = datetime.now(UTC)
STATES = ["Completed"] * 70 + ["Failed"] * 10 + ["Running"] * 8 + ["Scheduled"] * 8 + ["Crashed"] * 2 + ["Cancelled"] * 2


def _run(i: int, rng: random.Random) -> FlowRun:
    dep = f"dep-{i % 20}"
    run_id = f"bench-{i:07d}"
    return FlowRun(
        id=run_id, name=f"{dep}-{i}", flow_name=f"flow-{i % 5}", deployment_name=dep,
        deployment_id=f"id-{dep}", parameters={"n": i, "text": "x" * 40},
        tags=[f"team-{i % 7}", "bench"], state=State.named(rng.choice(STATES)),
        created=NOW - timedelta(seconds=rng.uniform(0, 7 * 86400)),
        triggering_event={"id": f"e{i}", "source": "/bench", "type": "com.example.bench"},
    )


async def store_runs(bus: Bus, n: int) -> float:
    kv = await bus.kv(bus.layout.flow_runs)
    rng = random.Random(7)
    start = time.perf_counter()
    for chunk in range(0, n, 1000):
        runs = [_run(i, rng) for i in range(chunk, min(n, chunk + 1000))]
        await asyncio.gather(*(kv.put(r.id, r.model_dump_json().encode()) for r in runs))
    return time.perf_counter() - start


def index_alone(n: int, queries: dict[str, RunFilter], repeat: int) -> tuple[float, float, dict[str, tuple[float, float, float]]]:
    """Load time (s), traced memory (MB) and per-query p50/p99 (ms) of a RunIndex of ``n`` runs,
    and the p50 of the CPU time each query took (less sensitive to a loaded machine)."""
    rng = random.Random(7)
    raws = [(r.id, r.model_dump_json().encode()) for r in (_run(i, rng) for i in range(n))]
    tracemalloc.start()
    start = time.perf_counter()
    index = RunIndex()
    for revision, (run_id, raw) in enumerate(raws, start=1):
        index.apply(run_id, raw, revision)
    index.finish_load()
    loaded = time.perf_counter() - start
    memory = tracemalloc.get_traced_memory()[0] / 2**20
    tracemalloc.stop()
    del raws
    out: dict[str, tuple[float, float, float]] = {}
    for label, where in queries.items():
        samples, cpu = [], []
        for _ in range(repeat):
            t0, c0 = time.perf_counter(), time.process_time()
            index.query(where, 0, 50)
            cpu.append((time.process_time() - c0) * 1000)
            samples.append((time.perf_counter() - t0) * 1000)
        out[label] = (_pct(samples, 0.5), _pct(samples, 0.99), _pct(cpu, 0.5))
    return loaded, memory, out


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_gateway(nats_url: str, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "FLOWBUS_NATS_URL": nats_url, "FLOWBUS_NAMESPACE": "bench",
           "FLOWBUS_GATEWAY_AUTH": "false", "FLOWBUS_GATEWAY_RATE_LIMIT_PER_SECOND": "0"}
    exe = Path(sys.executable).parent / "flowbus"
    return subprocess.Popen([str(exe), "gateway", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


async def wait_listing(url: str) -> float:
    import aiohttp

    start = time.perf_counter()
    async with aiohttp.ClientSession() as s:
        for _ in range(6000):
            try:
                async with s.get(url + "/api/v1/flow-runs?limit=1") as r:
                    if r.status == 200:
                        return time.perf_counter() - start
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise SystemExit("the gateway never answered the run list")


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def timings(url: str, paths: dict[str, str], requests: int) -> dict[str, tuple[float, float, int]]:
    import aiohttp

    out: dict[str, tuple[float, float, int]] = {}
    async with aiohttp.ClientSession() as s:
        for label, path in paths.items():
            samples: list[float] = []
            total = 0
            for i in range(requests + 5):
                t0 = time.perf_counter()
                async with s.get(url + path) as r:
                    body = await r.read()
                    if r.status != 200:
                        raise SystemExit(f"{path}: {r.status} {body[:200]!r}")
                if i >= 5:  # the first few warm connections and caches
                    samples.append((time.perf_counter() - t0) * 1000)
                if path.startswith("/api") and i == 0:
                    import json

                    total = json.loads(body)["total"]
            out[label] = (_pct(samples, 0.5), _pct(samples, 0.99), total)
    return out


async def main_async(args: argparse.Namespace) -> None:
    since = (NOW - timedelta(days=2)).isoformat().replace("+00:00", "Z")
    until = (NOW - timedelta(days=1)).isoformat().replace("+00:00", "Z")
    paths = {
        "no filter": "/api/v1/flow-runs?limit=50",
        "state=Failed": "/api/v1/flow-runs?limit=50&state=Failed",
        "deployment": "/api/v1/flow-runs?limit=50&deployment=dep-3",
        "flow": "/api/v1/flow-runs?limit=50&flow=flow-2",
        "tag": "/api/v1/flow-runs?limit=50&tag=team-4",
        "time range": f"/api/v1/flow-runs?limit=50&since={since}&until={until}",
        "state+deployment": "/api/v1/flow-runs?limit=50&state=Crashed&deployment=dep-3",
        "text search": "/api/v1/flow-runs?limit=50&q=dep-7-",
        "text search, one run": "/api/v1/flow-runs?limit=50&q=dep-7-12347",
        "text, common grams": "/api/v1/flow-runs?limit=50&q=bench-00",
        "text, common grams, 1/7": "/api/v1/flow-runs?limit=50&q=team-4%20bench",
        "text, common grams + flow": "/api/v1/flow-runs?limit=50&q=bench-00&flow=flow-2",
        "text, common + time range": f"/api/v1/flow-runs?limit=50&q=bench-00&since={since}&until={until}",
        "text + flow + tag": "/api/v1/flow-runs?limit=50&q=dep-7-&flow=flow-2&tag=team-4",
        "flow + tag": "/api/v1/flow-runs?limit=50&flow=flow-2&tag=team-4",
        "flow + tag, offset 1,000": "/api/v1/flow-runs?limit=50&flow=flow-2&tag=team-4&offset=1000",
        "state + time range": f"/api/v1/flow-runs?limit=50&state=Failed&since={since}&until={until}",
        "page at offset 50,000": "/api/v1/flow-runs?limit=50&offset=50000",
        "UI run list": "/ui/runs",
        "UI run list, state=Failed": "/ui/runs?state=Failed",
    }
    with tempfile.TemporaryDirectory(prefix="flowbus-bench-") as tmp, EmbeddedNats(tmp) as server:
        settings = NatsSettings(nats_url=[server.url], namespace="bench")
        async with await Bus.connect(settings) as bus:
            port = free_port()
            empty = start_gateway(server.url, port)
            try:
                await wait_listing(f"http://127.0.0.1:{port}")
                rss_empty = rss_mb(empty.pid)
            finally:
                stop(empty)
            stored = await store_runs(bus, args.runs)
        port = free_port()
        gw = start_gateway(server.url, port)
        try:
            url = f"http://127.0.0.1:{port}"
            ready = await wait_listing(url)
            results = await timings(url, paths, args.requests)
            rss_full = rss_mb(gw.pid)
        finally:
            stop(gw)
    load1, load5, _ = os.getloadavg()
    print(f"cores: {os.cpu_count()}, load average {load1:.1f} / {load5:.1f} (1 / 5 min)")
    print(f"stored {args.runs:,} runs in {stored:.1f} s; gateway listed them {ready:.1f} s after start")
    print(f"gateway memory: {rss_empty:.0f} MB empty, {rss_full:.0f} MB with {args.runs:,} runs")
    print(f"{'request':28} {'p50 ms':>8} {'p99 ms':>8} {'matches':>9}   ({args.requests} sequential requests each; aim p99 <= 50 ms)")
    for label, (p50, p99, total) in results.items():
        print(f"{label:28} {p50:8.1f} {p99:8.1f} {total if total else '':>9}")


def print_index_alone(n: int) -> None:
    since, until = NOW - timedelta(days=2), NOW - timedelta(days=1)
    queries = {
        "no filter": RunFilter(), "state=Failed": RunFilter(state="Failed"),
        "deployment": RunFilter(deployment="dep-3"), "tag": RunFilter(tag="team-4"),
        "time range": RunFilter(since=since, until=until),
        "state+deployment": RunFilter(state="Crashed", deployment="dep-3"),
        "flow+tag": RunFilter(flow="flow-2", tag="team-4"),
        "text search": RunFilter(text="dep-7-"),
        "text search, one run": RunFilter(text="dep-7-12347"),
        "text, common grams": RunFilter(text="bench-00"),
        "text, common grams, 1/7": RunFilter(text="team-4 bench"),
        "text, common grams + flow": RunFilter(text="bench-00", flow="flow-2"),
        "text, common + time range": RunFilter(text="bench-00", since=since, until=until),
        "text, common + since 8 days": RunFilter(text="bench-00", since=NOW - timedelta(days=8)),
        "text search, 2 letters": RunFilter(text="p-"),
        "text + state": RunFilter(text="dep-7-1234", state="Failed"),
    }
    loaded, memory, results = index_alone(n, queries, 200)
    load1, _, _ = os.getloadavg()
    print(f"run index alone ({n:,} runs, load average {load1:.1f}): loaded in {loaded:.1f} s, "
          f"{memory:.0f} MB traced (with its cache of recent records)")
    print(f"{'query (limit 50)':28} {'p50 ms':>8} {'p99 ms':>8} {'cpu p50':>8}")
    for label, (p50, p99, cpu) in results.items():
        print(f"{label:28} {p50:8.3f} {p99:8.3f} {cpu:8.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=100_000, help="flow runs stored")
    parser.add_argument("--requests", type=int, default=200, help="requests per query")
    parser.add_argument("--index-only", action="store_true",
                        help="measure the run index alone (no NATS, no gateway)")
    args = parser.parse_args()
    print_index_alone(args.runs)
    if not args.index_only:
        asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
