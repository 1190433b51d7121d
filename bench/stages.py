"""Where the milliseconds go: one event's path through ``flowbus dev``, stage by stage.

Starts ``flowbus dev`` (embedded NATS, gateway, orchestrator, one runner) in a
subprocess on free ports, deploys a flow triggered by ``bench.stage`` events (plus
``--extra`` idle deployments with triggers on other types, to load the index),
then POSTs single events one at a time and splits each one's way to the flow
body from the parts' own timestamps:

- ``POST``: request sent -> gateway answered (the bench's clock);
- ``record``: answered -> the flow-run record's ``created`` (the orchestrator's);
- ``running``: created -> the record's ``start_time`` (the runner's claim);
- ``body``: start_time -> the flow body's first line (``time.time()`` in the body);
- ``total``: request sent -> body's first line.

All clocks are this machine's wall clock. Prints p50 / p90 / p99 / max per stage
and the load average before and after.

Usage: python bench/stages.py [--events 200] [--pace 0.02] [--extra 0] [--burst 0]
                              [--runner-limit N] [--profile FILE] [--uvloop]
                              [--count-ops]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._opcount import OpCounter  # noqa: E402
from events.bus import Bus  # noqa: E402
from events.cloudevent import BATCH_MAX_EVENTS  # noqa: E402
from events.deployments import read_result, save_deployment  # noqa: E402
from events.records import Deployment, FlowRun  # noqa: E402
from events.settings import NatsSettings  # noqa: E402

FLOW = '''
import time
from flowbus import flow

@flow
def started_at() -> float:
    return time.time()
'''

STAGES = ("POST", "record", "running", "body", "total")
CPU_KINDS = ("python", "dev", "workers", "nats-server")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def tree_cpu(root: int) -> dict[str, float]:
    """CPU seconds (user + system) used so far by ``root`` and its descendants (those
    that exited and were reaped included), by program: ``nats-server``, ``dev`` (the
    ``flowbus dev`` process: gateway, orchestrator and runner), ``workers`` (the
    runner's worker processes and their fork server) and ``python`` (both)."""
    parents: dict[int, int] = {}
    stats: dict[int, tuple[str, float]] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        name = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2 :].split()
        parents[int(entry.name)] = int(fields[1])
        # Its own time and that of its children it reaped (recycled workers).
        own, reaped = (sum(int(f) for f in fields[i:i + 2]) / tick for i in (11, 13))
        stats[int(entry.name)] = (name, own, reaped)
    used: dict[str, float] = {}

    def add(kind: str, seconds: float) -> None:
        used[kind] = used.get(kind, 0.0) + seconds

    # Under --profile, ``root`` is py-spy and ``flowbus dev`` its child: py-spy is left out.
    dev_pid = root
    if root in stats and "py-spy" in stats[root][0]:
        dev_pid = next((p for p, parent in parents.items()
                        if parent == root and "py" in stats[p][0]), root)
    for pid, (name, own, reaped) in stats.items():
        if pid == root and dev_pid != root:
            continue
        ancestor = pid
        while ancestor not in (0, 1, root) and ancestor in parents:
            ancestor = parents[ancestor]
        if ancestor != root:
            continue
        if "nats" in name:
            add("nats-server", own + reaped)
        elif pid == dev_pid:  # the parts (gateway, orchestrator, runner) share this process
            add("dev", own)
            add("workers", reaped)
        else:  # the fork server and the runner's workers (recycled ones included)
            add("workers", own + reaped)
    used["python"] = used.get("dev", 0.0) + used.get("workers", 0.0)
    return used


class Dev:
    """``flowbus dev`` in a subprocess; its NATS URL, namespace and gateway URL."""

    def __init__(self, workdir: Path, profile: str | None = None, uvloop: bool = False,
                 runner_limit: int | None = None) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWBUS_")}
        env.update(PYTHONPATH=str(ROOT), FLOWBUS_HOME=str(workdir / "home"),
                   FLOWBUS_LOGGING_LEVEL="WARNING", FLOWBUS_NAMESPACE=f"st{uuid.uuid4().hex[:6]}")
        if runner_limit is not None:
            env["FLOWBUS_RUNNER_LIMIT"] = str(runner_limit)
        self.log = workdir / "dev.log"
        launcher = ["-m", "flowbus.cli"]
        if uvloop:  # every part of ``flowbus dev`` on uvloop's event loop
            launcher = ["-c", "import asyncio, uvloop; asyncio.set_event_loop_policy("
                        "uvloop.EventLoopPolicy()); from flowbus.cli import main; main()"]
        command = [sys.executable, *launcher, "dev", "--nats-port", "0",
                   "--gateway-port", "0", "--data-dir", str(workdir / "nats")]
        if profile:
            command = [str(Path(sys.executable).parent / "py-spy"), "record", "--subprocesses",
                       "--rate", "200", "--format", "raw", "--output", profile, "--", *command]
        self.proc = subprocess.Popen(
            command,
            env=env, cwd=workdir, stdout=subprocess.PIPE, stderr=open(self.log, "wb"), text=True)
        self.nats = self.namespace = self.gateway = ""
        self.profiled = bool(profile)

    def wait_ready(self, timeout: float = 120) -> None:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        for line in self.proc.stdout:
            if m := re.match(r"NATS JetStream\s+(\S+)", line):
                self.nats = m.group(1)
            elif m := re.match(r"namespace\s+(\S+)", line):
                self.namespace = m.group(1)
            elif m := re.match(r"gateway\s+(\S+)", line):
                self.gateway = m.group(1)
            elif "is ready" in line:
                return
            if time.monotonic() > deadline:
                break
        raise RuntimeError(f"flowbus dev did not start:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT if self.profiled else signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


class Records:
    """Flow runs of one deployment, by the id of the event that caused them."""

    def __init__(self, deployment_id: str) -> None:
        self.deployment_id = deployment_id
        self.waiting: dict[str, asyncio.Future[FlowRun]] = {}
        self.started = 0

    def expect(self, event_id: str) -> asyncio.Future[FlowRun]:
        future: asyncio.Future[FlowRun] = asyncio.get_running_loop().create_future()
        self.waiting[event_id] = future
        return future

    async def watch(self, bus: Bus) -> None:
        kv = await bus.kv(bus.layout.flow_runs)
        async for change in kv.watch(">"):
            if change.value is None or b'"COMPLETED"' not in change.value:
                continue
            run = FlowRun.model_validate_json(change.value)
            if run.deployment_id != self.deployment_id or not run.triggering_event:
                continue
            future = self.waiting.pop(str(run.triggering_event.get("id")), None)
            if future is not None and not future.done():
                future.set_result(run)


async def post(session: aiohttp.ClientSession, url: str, body: Any, batch: bool = False) -> None:
    kind = "cloudevents-batch" if batch else "cloudevents"
    async with session.post(f"{url}/events", data=json.dumps(body),
                            headers={"content-type": f"application/{kind}+json"}) as resp:
        if resp.status >= 300:
            raise RuntimeError(f"gateway answered {resp.status}: {await resp.text()}")


def event(event_id: str) -> dict[str, Any]:
    return {"specversion": "1.0", "type": "bench.stage", "source": "/bench/stages",
            "id": event_id, "data": {}}


async def single(bus: Bus, gateway: str, records: Records, args: argparse.Namespace,
                 dev_pid: int) -> None:
    rows: dict[str, list[float]] = {s: [] for s in STAGES}
    cpu_before: dict[str, float] = {}
    async with aiohttp.ClientSession() as session:
        for i in range(args.warmup + args.events):
            event_id = uuid.uuid4().hex
            future = records.expect(event_id)
            t0 = time.time()
            await post(session, gateway, event(event_id))
            t1 = time.time()
            try:
                # A warm-up event may come before the orchestrator has read the
                # deployment (nothing runs for it): it is skipped, not waited for.
                run = await asyncio.wait_for(future, 15 if i < args.warmup else 60)
            except TimeoutError:
                if i < args.warmup:
                    continue
                raise
            body = float(await read_result(bus, run))
            if i < args.warmup:
                continue
            if not cpu_before:
                cpu_before = tree_cpu(dev_pid)
            assert run.start_time is not None
            created, running = run.created.timestamp(), run.start_time.timestamp()
            for name, value in zip(STAGES, (t1 - t0, created - t1, running - created,
                                            body - running, body - t0), strict=True):
                rows[name].append(value * 1000)
            await asyncio.sleep(args.pace)
    cpu_after = tree_cpu(dev_pid)
    print(f"single events: {args.events} paced {args.pace * 1000:.0f} ms apart "
          f"({args.extra + 1} deployments); CPU per event (flowbus dev and its children): "
          + ", ".join(f"{kind} {1000 * (cpu_after.get(kind, 0) - cpu_before.get(kind, 0)) / args.events:.1f} ms"
                      for kind in CPU_KINDS) + "; ms per stage:")
    for name in STAGES:
        values = rows[name]
        print(f"  {name:>8}: p50 {pct(values, 0.5):7.2f}  p90 {pct(values, 0.9):7.2f}  "
              f"p99 {pct(values, 0.99):7.2f}  max {max(values):7.2f}")


async def burst(bus: Bus, gateway: str, records: Records, size: int, dev_pid: int,
                counter: OpCounter | None = None) -> None:
    ids = [uuid.uuid4().hex for _ in range(size)]
    futures = [records.expect(i) for i in ids]
    if counter is not None:
        await counter.start()
    cpu_before = tree_cpu(dev_pid)
    begin = time.time()
    async with aiohttp.ClientSession() as session:
        for first in range(0, size, BATCH_MAX_EVENTS):
            chunk = ids[first:first + BATCH_MAX_EVENTS]
            await post(session, gateway, [event(i) for i in chunk], batch=True)
    posted = time.time() - begin
    runs = await asyncio.wait_for(asyncio.gather(*futures), 600)
    cpu_after = tree_cpu(dev_pid)
    counts = await counter.stop() if counter is not None else None  # before reading results
    bodies = [float(await read_result(bus, run)) for run in runs]
    print(f"burst of {size}: POSTed in {posted:.2f} s; last body started {max(bodies) - begin:.2f} s "
          f"after the first POST; all {len(runs)} completed at "
          f"{max(r.end_time.timestamp() for r in runs if r.end_time) - begin:.2f} s; "
          "CPU per event (flowbus dev and its children): "
          + ", ".join(f"{kind} {1000 * (cpu_after.get(kind, 0) - cpu_before.get(kind, 0)) / size:.1f} ms"
                      for kind in CPU_KINDS))
    if counts is not None:
        print(OpCounter.report(counts, size))


async def main(args: argparse.Namespace) -> None:
    print(f"cpus {os.cpu_count()}, python {sys.version.split()[0]}, "
          f"loop {'uvloop' if args.uvloop else 'asyncio'}, load average before: {load()}")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        (workdir / "bench_flows.py").write_text(FLOW)
        dev = Dev(workdir, args.profile, args.uvloop, args.runner_limit)
        try:
            await asyncio.get_running_loop().run_in_executor(None, dev.wait_ready)
            settings = NatsSettings(nats_url=[dev.nats], namespace=dev.namespace)
            async with await Bus.connect(settings) as bus:
                deployment, _ = await save_deployment(bus, Deployment(
                    name="stages", flow_name="started-at",
                    entrypoint="bench_flows.py:started_at",
                    triggers=[{"expect": ["bench.stage"]}]))
                for n in range(args.extra):
                    await save_deployment(bus, Deployment(
                        name=f"idle-{n}", flow_name="started-at",
                        entrypoint="bench_flows.py:started_at",
                        triggers=[{"expect": [f"bench.idle.{n}"]}]))
                records = Records(deployment.id)
                watcher = asyncio.create_task(records.watch(bus))
                await asyncio.sleep(1.0)  # the orchestrator has read the deployments
                try:
                    if args.events:
                        await single(bus, dev.gateway, records, args, dev.proc.pid)
                    if args.burst:
                        counter = OpCounter(dev.nats, dev.namespace) if args.count_ops else None
                        await burst(bus, dev.gateway, records, args.burst, dev.proc.pid, counter)
                finally:
                    watcher.cancel()
        except BaseException:
            print(f"flowbus dev's log ends:\n{dev.log.read_text()[-3000:]}", file=sys.stderr)
            raise
        finally:
            dev.stop()
    print(f"load average after: {load()}")
    if args.profile:
        summarize(args.profile)


def summarize(raw: str, top: int = 25) -> None:
    """Where the sampled CPU went, start-up (imports) and idle waits left out: own samples per
    function, and per innermost flowbus function, for the dev process and its workers."""
    own: dict[str, int] = {}
    ours: dict[str, int] = {}
    procs: dict[str, int] = {}
    total = 0
    for line in Path(raw).read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit() or "_find_and_load" in stack:
            continue
        n = int(count)
        frames = stack.split(";")
        if frames[-1].startswith(("EpollSelector.select", "_PollLikeSelector.select")):
            continue  # waiting for the next event
        kind = "worker" if "forkserver" in stack else "dev"
        procs[kind] = procs.get(kind, 0) + n
        total += n
        leaf = re.sub(r":\d+\)$", ")", frames[-1])
        own[leaf] = own.get(leaf, 0) + n
        inner = [f for f in frames if re.search(r"\((events|gateway|orchestrator|runners|flowbus)/", f)]
        if inner:
            name = re.sub(r"^(\S+) \(([\w/]+)\.py:\d+\)$", r"\2:\1", inner[-1])
            ours[f"{kind} {name}"] = ours.get(f"{kind} {name}", 0) + n
    print(f"profile: {total} samples outside imports ("
          + ", ".join(f"{k} {v}" for k, v in procs.items()) + ")")
    for title, table in (("own samples by function", own),
                         ("samples by innermost flowbus function", ours)):
        print(f"  {title}:")
        for name, count in sorted(table.items(), key=lambda kv: -kv[1])[:top]:
            print(f"    {100 * count / max(1, total):5.1f}%  {name}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=200, help="paced single events")
    parser.add_argument("--warmup", type=int, default=20, help="events not counted, first")
    parser.add_argument("--pace", type=float, default=0.02, help="seconds between events")
    parser.add_argument("--extra", type=int, default=0, help="idle deployments with triggers")
    parser.add_argument("--burst", type=int, default=0, help="then a burst of N (batched POSTs)")
    parser.add_argument("--runner-limit", type=int, default=None,
                        help="runs flowbus dev's runner executes at once (default: its own, 4)")
    parser.add_argument("--count-ops", action="store_true",
                        help="count the burst's NATS messages by kind (bench/_opcount.py; "
                        "its CPU figures then include the counting)")
    parser.add_argument("--uvloop", action="store_true",
                        help="run flowbus dev on uvloop's event loop (runner workers keep asyncio)")
    parser.add_argument("--profile", metavar="FILE", help="sample flowbus dev with py-spy "
                        "into FILE (raw format) and print where the CPU went")
    asyncio.run(main(parser.parse_args()))
