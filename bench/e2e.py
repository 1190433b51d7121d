"""Benchmark a flow run from the moment it is asked for to the moment its body starts.

Starts its own embedded nats-server with JetStream, and a ``flowbus runner`` process
per isolation mode (``process`` with warm workers, then ``inline``). Runs are
started the way the orchestrator starts them (:func:`start_run_as_orchestrator`:
the flow-run record in KV, then the job message), so the figures cover what the
runner owns: not the gateway, not the orchestrator's matching (bench/orchestrator.py
and bench/gateway.py measure those). ``STARTERS`` is where a starter that POSTs a
CloudEvent would plug in; there is none yet.

Prints, per isolation mode:

- job published -> flow body started: p50 / p90 / p99 (one run at a time, warm);
- trivial flow runs completed per second (many runs in flight);
- runner memory (RSS of the runner, and of its workers) at rest and under load.

Usage: python bench/e2e.py [--runs N] [--burst N] [--limit N] [--modes process,inline]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from events.bus import Bus  # noqa: E402
from events.deployments import read_result, save_deployment  # noqa: E402
from events.embedded import EmbeddedNats  # noqa: E402
from events.records import Deployment, FlowRun, State  # noqa: E402
from events.settings import NatsSettings  # noqa: E402

FLOW = '''
import time
from flowbus import flow

@flow
def started_at() -> float:
    return time.time()

@flow
def trivial(i: int) -> int:
    return i
'''

Starter = Callable[[Bus, Deployment, dict[str, Any], str], Awaitable[float]]


async def start_run_as_orchestrator(bus: Bus, deployment: Deployment,
                                    parameters: dict[str, Any], run_id: str) -> float:
    """Create the Scheduled record and publish the job; the wall time of the publish."""
    run = FlowRun(id=run_id, name="bench", flow_name=deployment.flow_name,
                  deployment_id=deployment.id, deployment_name=deployment.name,
                  work_pool=deployment.work_pool, parameters=parameters,
                  state=State.named("Scheduled"))
    kv = await bus.kv(bus.layout.flow_runs)
    await kv.create(run.id, run.model_dump_json().encode())
    body = json.dumps({"flow_run_id": run.id, "deployment_id": deployment.id, "attempt": 1})
    t0 = time.time()
    await bus.publish_raw(bus.layout.runs_subject(deployment.work_pool), body.encode(),
                          {"Nats-Msg-Id": f"{run.id}:1"})
    return t0


# The event POST path (gateway -> orchestrator -> runner) plugs in here.
STARTERS: dict[str, Starter] = {"job": start_run_as_orchestrator}


_FINAL_MARKS = (b'"COMPLETED"', b'"FAILED"', b'"CRASHED"', b'"CANCELLED"')


class Finals:
    """Every run reaching a final state, from one watch of the flow-runs bucket."""

    def __init__(self) -> None:
        self.waiting: dict[str, asyncio.Future[FlowRun]] = {}
        self.done = 0

    def expect(self, run_id: str) -> asyncio.Future[FlowRun]:
        future = asyncio.get_running_loop().create_future()
        self.waiting[run_id] = future
        return future

    async def start(self, start: Starter, bus: Bus, deployment: Deployment,
                    parameters: dict[str, Any]) -> tuple[asyncio.Future[FlowRun], float]:
        run_id = str(uuid.uuid4())
        future = self.expect(run_id)
        return future, await start(bus, deployment, parameters, run_id)

    async def watch(self, bus: Bus) -> None:
        kv = await bus.kv(bus.layout.flow_runs)
        async for change in kv.watch(">"):
            future = self.waiting.get(change.key)
            if future is None or change.value is None or future.done():
                continue
            if not any(t in change.value for t in _FINAL_MARKS):
                continue  # cheap: most changes are not final, skip parsing them
            run = FlowRun.model_validate_json(change.value)
            if run.state.is_final():
                self.done += 1
                future.set_result(run)


def rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def descendants(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                for child in f.read().split():
                    out.append(int(child))
                    out.extend(descendants(int(child)))
    except OSError:
        pass
    return out


def memory(pid: int) -> tuple[int, int]:
    """(runner RSS, sum of its children's RSS) in MiB."""
    return rss_kib(pid) // 1024, sum(rss_kib(c) for c in descendants(pid)) // 1024


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def start_runner(url: str, namespace: str, mode: str, limit: int, workdir: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWBUS_")}
    env.update(FLOWBUS_NATS_URL=url, FLOWBUS_NAMESPACE=namespace, PYTHONPATH=str(ROOT),
               FLOWBUS_HOME=str(workdir / "home"), FLOWBUS_LOGGING_LEVEL="WARNING",
               FLOWBUS_RUNNER_WORKER_MAX_RUNS="100000")
    return subprocess.Popen(
        [sys.executable, "-m", "flowbus.cli", "runner", "--pool", f"bench-{mode}",
         "--isolation", mode, "--limit", str(limit)],
        env=env, cwd=workdir, stdout=subprocess.DEVNULL,
        stderr=open(workdir / f"runner-{mode}.log", "wb"),
    )


async def bench_mode(bus: Bus, mode: str, args: argparse.Namespace, url: str, workdir: Path,
                     start: Starter) -> dict[str, Any]:
    flows = workdir / "bench_flows.py"
    flows.write_text(FLOW)
    pool = f"bench-{mode}"
    latency_dep, _ = await save_deployment(bus, Deployment(
        name=f"latency-{mode}", flow_name="started-at", entrypoint=f"{flows.name}:started_at",
        work_pool=pool))
    trivial_dep, _ = await save_deployment(bus, Deployment(
        name=f"trivial-{mode}", flow_name="trivial", entrypoint=f"{flows.name}:trivial",
        work_pool=pool))
    limit = args.limit if mode == "process" else args.inline_limit
    runner = start_runner(url, bus.layout.namespace, mode, limit, workdir)
    finals = Finals()
    watcher = asyncio.create_task(finals.watch(bus))
    await asyncio.sleep(0.2)  # the watch is in place
    try:
        # Warm up: every worker imports the flow module once.
        warm = [await finals.start(start, bus, trivial_dep, {"i": i}) for i in range(limit * 4)]
        await asyncio.wait_for(asyncio.gather(*(future for future, _ in warm)), 60)
        await asyncio.sleep(0.5)
        rest = memory(runner.pid)

        latencies = []
        for _ in range(args.runs):
            future, t0 = await finals.start(start, bus, latency_dep, {})
            run = await asyncio.wait_for(future, 30)
            started = await read_result(bus, run)
            latencies.append((float(started) - t0) * 1000)

        peak = [0, 0]
        sampling = True

        async def sample() -> None:
            while sampling:
                r, w = memory(runner.pid)
                peak[0], peak[1] = max(peak[0], r), max(peak[1], w)
                await asyncio.sleep(0.05)

        sampler = asyncio.create_task(sample())
        workers = descendants(runner.pid)
        cpu_before = cpu_seconds(runner.pid), sum(cpu_seconds(w) for w in workers)
        own_before = time.process_time()
        begin = time.perf_counter()
        futures = []
        for first in range(0, args.burst, 50):  # starts pipelined, as a busy orchestrator
            started = await asyncio.gather(*(
                finals.start(start, bus, trivial_dep, {"i": i})
                for i in range(first, min(first + 50, args.burst))))
            futures.extend(future for future, _ in started)
        runs = await asyncio.wait_for(asyncio.gather(*futures), 300)
        elapsed = time.perf_counter() - begin
        cpu = (cpu_seconds(runner.pid) - cpu_before[0],
               sum(cpu_seconds(w) for w in workers) - cpu_before[1],
               time.process_time() - own_before)
        sampling = False
        await sampler
        completed = sum(1 for r in runs if r.state.name == "Completed")
        return {
            "mode": mode, "limit": limit, "p50": pct(latencies, 0.5), "p90": pct(latencies, 0.9),
            "p99": pct(latencies, 0.99), "rate": completed / elapsed, "completed": completed,
            "burst": args.burst, "rest": rest, "peak": tuple(peak),
            "cpu_ms": tuple(1000 * c / max(1, completed) for c in cpu),
        }
    except BaseException:
        print((workdir / f"runner-{mode}.log").read_text()[-3000:], file=sys.stderr)
        raise
    finally:
        watcher.cancel()
        runner.terminate()
        runner.wait(30)


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp, EmbeddedNats(Path(tmp) / "nats") as server:
        settings = NatsSettings(nats_url=[server.url], namespace=f"bench{uuid.uuid4().hex[:6]}")
        async with await Bus.connect(settings) as bus:
            print(f"cpus: {os.cpu_count()}, python {sys.version.split()[0]}")
            print("start: job published as the orchestrator does -> flow body started")
            for mode in args.modes.split(","):
                result = await bench_mode(bus, mode, args, server.url, Path(tmp), STARTERS["job"])
                print(
                    f"{result['mode']:>7} (limit {result['limit']}): "
                    f"start p50 {result['p50']:.2f} ms, p90 {result['p90']:.2f} ms, "
                    f"p99 {result['p99']:.2f} ms | {result['rate']:.0f} runs/s "
                    f"({result['completed']}/{result['burst']} completed) | "
                    f"RSS at rest: runner {result['rest'][0]} MiB + workers {result['rest'][1]} MiB; "
                    f"under load: runner {result['peak'][0]} MiB + workers {result['peak'][1]} MiB"
                )
                runner_ms, workers_ms, bench_ms = result["cpu_ms"]
                print(f"{'':>7}  CPU per run: runner {runner_ms:.2f} ms, workers {workers_ms:.2f} ms, "
                      f"this benchmark (as orchestrator) {bench_ms:.2f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=300, help="sequential runs for latency")
    parser.add_argument("--burst", type=int, default=2000, help="runs in flight for throughput")
    parser.add_argument("--limit", type=int, default=8, help="process-isolation runner limit")
    parser.add_argument("--inline-limit", type=int, default=64, help="inline runner limit")
    parser.add_argument("--modes", default="process,inline")
    asyncio.run(main(parser.parse_args()))
