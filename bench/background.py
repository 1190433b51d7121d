"""Benchmark background task runs: ``Task.delay`` -> task body started, and tasks/s.

Starts its own embedded nats-server with JetStream and two ``flowbus task-worker``
processes serving the same task; this process calls ``Task.delay`` as a web handler
would (no flow around it). Prints:

- ``Task.delay`` called -> task body started: p50 / p90 / p99, one run at a time;
- trivial task runs completed per second with both workers (many in flight), from the
  first ``delay`` to the last body's end, and how fast ``delay`` itself returns;
- the CPU time spent per run of the burst by the calling process, the two workers and
  nats-server, and the system (kernel) part of the last two (figures that a loaded
  machine disturbs less than rates do);
- the load average before and after.

``--profile DIR`` also samples the calling process and both workers with py-spy (the
``bench`` extra) during the burst, writes the raw samples into DIR and prints where
each process's busy samples fell.

The body stamps the wall clock when it starts; the caller stamps it before ``delay``
(one machine, one clock).

Usage: python bench/background.py [--runs N] [--burst N] [--limit N] [--callers N]
                                  [--profile DIR]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from events.embedded import EmbeddedNats  # noqa: E402

TASKS = '''
import time
from flowbus import task

@task
def started_at() -> float:
    return time.time()

@task
def trivial(i: int) -> float:
    return time.time()
'''


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def cpu_seconds(pid: int, system_only: bool = False) -> float:
    """User + system (or only system) CPU time of process ``pid`` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    ticks = int(fields[12]) if system_only else int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def start_worker(root: Path, env: dict[str, str], limit: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "flowbus.cli", "task-worker", "bench_tasks:started_at",
         "bench_tasks:trivial", "--limit", str(limit), "--log-level", "WARNING"],
        cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        start_new_session=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "serving" not in line:
        raise SystemExit(f"task worker did not start: {line!r}")
    return proc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=300, help="one-at-a-time runs for latency")
    parser.add_argument("--burst", type=int, default=2000, help="runs for throughput")
    parser.add_argument("--limit", type=int, default=16, help="--limit of each worker")
    parser.add_argument("--callers", type=int, default=4, help="threads calling delay")
    parser.add_argument("--profile", metavar="DIR", type=Path,
                        help="sample the caller and the workers with py-spy during the burst")
    args = parser.parse_args()
    print(f"cpus {os.cpu_count()}, load average before: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory() as tmp, EmbeddedNats(Path(tmp) / "nats") as server:
        root = Path(tmp) / "code"
        root.mkdir()
        (root / "bench_tasks.py").write_text(TASKS)
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWBUS_")}
        env.update(FLOWBUS_NATS_URL=server.url, FLOWBUS_NAMESPACE="bench",
                   FLOWBUS_HOME=str(Path(tmp) / "home"),
                   PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep))
        os.environ.update({k: env[k] for k in ("FLOWBUS_NATS_URL", "FLOWBUS_NAMESPACE",
                                               "FLOWBUS_HOME")})
        sys.path.insert(0, str(root))
        import bench_tasks

        workers = [start_worker(root, env, args.limit) for _ in range(2)]
        try:
            pids = {"workers": [w.pid for w in workers],
                    "nats-server": [server._proc.pid] if server._proc else []}
            run(bench_tasks, args, pids)
        finally:
            from flowbus import _remote

            _remote.reset()  # before the server stops
            for w in workers:
                os.killpg(w.pid, signal.SIGTERM)
            for w in workers:
                try:
                    w.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(w.pid, signal.SIGKILL)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def run(tasks: Any, args: argparse.Namespace, pids: dict[str, list[int]]) -> None:
    for _ in range(20):  # warm up: connections, imports, consumers
        tasks.started_at.delay().result(timeout=60)
    latencies, delay_calls = [], []
    for _ in range(args.runs):
        sent = time.time()
        future = tasks.started_at.delay()
        delay_calls.append(time.time() - sent)
        latencies.append(future.result(timeout=60) - sent)
    ms = [x * 1000 for x in latencies]
    print(f"Task.delay -> body started, one at a time ({args.runs} runs): "
          f"p50 {pct(ms, 0.5):.2f} ms, p90 {pct(ms, 0.9):.2f} ms, p99 {pct(ms, 0.99):.2f} ms")
    print(f"Task.delay call returns in: p50 {pct(delay_calls, 0.5) * 1000:.2f} ms")

    def cpu() -> dict[str, float]:
        out = {name: sum(cpu_seconds(p) for p in ps) for name, ps in pids.items()}
        out.update({f"{name} system": sum(cpu_seconds(p, system_only=True) for p in ps)
                    for name, ps in pids.items()})
        out["caller"] = time.process_time()
        return out

    spies = []
    if args.profile:
        from bench._spy import Spy

        args.profile.mkdir(parents=True, exist_ok=True)
        spies = [Spy(os.getpid(), args.profile / "caller.txt")] + [
            Spy(pid, args.profile / f"worker-{i}.txt") for i, pid in enumerate(pids["workers"])]
        time.sleep(1.0)  # py-spy attached
    cpu_before = cpu()
    first = time.time()

    def call(first_index: int) -> list[Any]:  # every args.callers-th run of the burst
        return [tasks.trivial.delay(i) for i in range(first_index, args.burst, args.callers)]

    with ThreadPoolExecutor(args.callers) as pool:
        futures = [f for chunk in pool.map(call, range(args.callers)) for f in chunk]
    published = time.time()
    caller_cpu = time.process_time() - cpu_before["caller"]
    for f in futures:  # the records only: reading results costs the server more
        f.wait(timeout=600)
    cpu_after = cpu()
    ends = [f.result(timeout=600) for f in futures]
    elapsed = max(ends) - first
    print(f"{len(futures)} trivial task runs over 2 workers (--limit {args.limit}, "
          f"{args.callers} calling threads): {len(futures) / elapsed:.0f} tasks/s "
          f"(all queued in {published - first:.2f} s, "
          f"{len(futures) / (published - first):.0f} delay calls/s)")
    per_run = {name: (cpu_after[name] - cpu_before[name]) * 1000 / len(futures)
               for name in cpu_after if name != "caller"}
    print(f"CPU per run of the burst: caller's delay {caller_cpu * 1000 / len(futures):.2f} ms, "
          + ", ".join(f"{name} {per_run[name]:.2f} ms (system {per_run[name + ' system']:.2f})"
                      for name in pids))
    print(f"median of the burst's body ends after the first delay: "
          f"{statistics.median(ends) - first:.2f} s")
    if spies:
        from bench._spy import summarize

        for spy in spies:
            spy.stop()
        summarize("caller (py-spy, during the burst)", [spies[0].output])
        summarize("workers (py-spy, during the burst)", [s.output for s in spies[1:]])


if __name__ == "__main__":
    main()
