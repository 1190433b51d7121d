"""Side by side: the same event -> flow program on flowbus and on Prefect 3.8.8.

One flow, written once (only its import differs), whose body's first line appends
``<key> <time.time()>`` to a journal file. Three workloads on each system, one
after the other on the same machine:

- ``W1``: a deployment run asked for through the API (flowbus: ``POST
  /api/v1/deployments/<name>/runs``; Prefect: ``run_deployment(..., timeout=0)``),
  one at a time -> the body's first line;
- ``W2``: a single event that a deployment trigger reacts to (flowbus: ``POST
  /events``; Prefect: ``emit_event``), one at a time -> the body's first line;
- ``W3``: a burst of ``--burst`` events (flowbus: batched POSTs; Prefect: emitted
  back to back) -> the moment the last body started.

flowbus runs as ``flowbus dev`` (embedded NATS, gateway, orchestrator, one runner
with process isolation). Prefect runs as ``prefect server start`` (SQLite in a
temporary ``PREFECT_HOME``) plus ``flow.serve()`` with a deployment trigger, its
runner polling every ``--prefect-poll`` seconds. Both on free loopback ports.
Prints per workload the median and the maximum, the ratio Prefect / flowbus, and
the load average around each side. Without a Prefect interpreter (``--prefect-python``,
default ``$PREFECT_PYTHON``), only flowbus is measured and the script says so.

Usage: python bench/vs_prefect.py [--prefect-python PY] [--events 10] [--burst 50]
       [--prefect-poll 1] [--timeout 300]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

FLOW = '''
import os
import signal
import time

from {package} import flow


@flow
def started_at(key: str = "") -> None:
    now = time.time()
    with open(os.environ["BENCH_JOURNAL"], "a") as journal:
        journal.write(f"{{key}} {{now}}\\n")


if __name__ == "__main__":  # Prefect: serve the deployment with its trigger
    from prefect.events import DeploymentEventTrigger

    started_at.serve(name="bench", triggers=[DeploymentEventTrigger(
        expect={{"bench.stage"}}, parameters={{"key": "{{{{ event.payload.key }}}}"}})])
'''


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Journal:
    """The bodies' journal: key -> the time the body's first line ran."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.touch()

    def read(self) -> dict[str, float]:
        seen = {}
        for line in self.path.read_text().splitlines():
            key, _, when = line.partition(" ")
            if when:
                seen[key] = float(when)
        return seen

    def wait(self, keys: list[str], timeout: float) -> dict[str, float] | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            seen = self.read()
            if all(k in seen for k in keys):
                return {k: seen[k] for k in keys}
            time.sleep(0.002)
        return None


def workloads(journal: Journal, events: int, burst: int, timeout: float,
              run_deployment: Any, send_event: Any, send_burst: Any) -> dict[str, Any]:
    """W1, W2 (seconds per event) and W3 (seconds to the last body), or why not."""
    results: dict[str, Any] = {}
    for name, send in (("W1", run_deployment), ("W2", send_event)):
        latencies = []
        for _ in range(events):
            key = str(uuid.uuid4())
            begin = time.time()
            send(key)
            seen = journal.wait([key], timeout)
            if seen is None:
                results[name] = f"a body did not start within {timeout:.0f} s"
                break
            latencies.append(seen[key] - begin)
        else:
            results[name] = latencies
    keys = [str(uuid.uuid4()) for _ in range(burst)]
    begin = time.time()
    send_burst(keys)
    seen = journal.wait(keys, timeout)
    if seen is None:
        done = sum(1 for k in keys if k in journal.read())
        results["W3"] = f"{done} of {burst} bodies started within {timeout:.0f} s"
    else:
        results["W3"] = max(seen.values()) - begin
    return results


# --- flowbus --------------------------------------------------------------------


def measure_flowbus(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    import asyncio

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from stages import Dev  # the same ``flowbus dev`` launcher as bench/stages.py

    from events.bus import Bus
    from events.deployments import save_deployment
    from events.records import Deployment
    from events.settings import NatsSettings

    (workdir / "bench_flows.py").write_text(FLOW.format(package="flowbus"))
    journal = Journal(workdir / "journal")
    os.environ["BENCH_JOURNAL"] = str(journal.path)
    dev = Dev(workdir)
    try:
        dev.wait_ready()

        async def deploy() -> None:
            settings = NatsSettings(nats_url=[dev.nats], namespace=dev.namespace)
            async with await Bus.connect(settings) as bus:
                await save_deployment(bus, Deployment(
                    name="bench", flow_name="started-at", entrypoint="bench_flows.py:started_at",
                    triggers=[{"expect": ["bench.stage"],
                               "parameters": {"key": "{{ event.data.key }}"}}]))

        asyncio.run(deploy())

        def post(path: str, body: Any, kind: str = "application/json") -> None:
            request = urllib.request.Request(f"{dev.gateway}{path}", data=json.dumps(body).encode(),
                                             headers={"content-type": kind}, method="POST")
            with urllib.request.urlopen(request, timeout=60) as resp:
                resp.read()

        def event(key: str) -> dict[str, Any]:
            return {"specversion": "1.0", "type": "bench.stage", "source": "/bench", "id": key,
                    "data": {"key": key}}

        def send_event(key: str) -> None:
            post("/events", event(key), "application/cloudevents+json")

        def send_burst(keys: list[str]) -> None:
            for first in range(0, len(keys), 500):
                post("/events", [event(k) for k in keys[first:first + 500]],
                     "application/cloudevents-batch+json")

        def run_deployment(key: str) -> None:
            post("/api/v1/deployments/bench/runs", {"parameters": {"key": key}})

        warm_up(journal, send_event, args.timeout)
        return workloads(journal, args.events, args.burst, args.timeout,
                         run_deployment, send_event, send_burst)
    finally:
        dev.stop()


def warm_up(journal: Journal, send_event: Any, timeout: float) -> None:
    """Events until one runs (the trigger may not be loaded yet), plus two more."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        key = str(uuid.uuid4())
        send_event(key)
        if journal.wait([key], 20) is not None:
            break
    else:
        raise RuntimeError(f"no event started a run within {timeout:.0f} s")
    for _ in range(2):
        key = str(uuid.uuid4())
        send_event(key)
        journal.wait([key], timeout)


# --- Prefect (this part runs under the Prefect interpreter) -----------------------


def prefect_side(args: argparse.Namespace) -> None:
    """Under Prefect's Python, with PREFECT_API_URL set: the workloads, as JSON on stdout."""
    from prefect.deployments import run_deployment as prefect_run
    from prefect.events import emit_event
    from prefect.events.clients import get_events_client  # noqa: F401 - fails early if absent

    journal = Journal(Path(os.environ["BENCH_JOURNAL"]))

    def send_event(key: str) -> None:
        emit_event(event="bench.stage", resource={"prefect.resource.id": "bench.source"},
                   id=uuid.UUID(key), payload={"key": key})

    def send_burst(keys: list[str]) -> None:
        for key in keys:
            send_event(key)

    def run_deployment(key: str) -> None:
        prefect_run("started-at/bench", parameters={"key": key}, timeout=0)

    warm_up(journal, send_event, args.timeout)
    results = workloads(journal, args.events, args.burst, args.timeout,
                        run_deployment, send_event, send_burst)
    print("RESULTS " + json.dumps(results), flush=True)


def wait_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


def measure_prefect(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    port = free_port()
    home = workdir / "prefect-home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "FLOWBUS_"))}
    env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_LOGGING_LEVEL="WARNING", BENCH_JOURNAL=str(workdir / "journal"),
               PREFECT_SERVER_UI_ENABLED="false",
               PREFECT_RUNNER_POLL_FREQUENCY=str(args.prefect_poll))
    (workdir / "bench_flows.py").write_text(FLOW.format(package="prefect"))
    prefect = str(Path(args.prefect_python).parent / "prefect")
    log = open(workdir / "prefect.log", "wb")
    server = subprocess.Popen([prefect, "server", "start", "--host", "127.0.0.1", "--port",
                               str(port)], env=env, cwd=workdir, stdout=log, stderr=log,
                              start_new_session=True)
    procs = [server]
    serve_log = None
    try:
        try:
            wait_http(f"http://127.0.0.1:{port}/api/health", args.timeout)
        except RuntimeError:
            log.flush()
            print((workdir / "prefect.log").read_text()[-3000:], file=sys.stderr)
            raise
        env["PREFECT_API_URL"] = f"http://127.0.0.1:{port}/api"
        serve_log = open(workdir / "serve.log", "wb")
        procs.append(subprocess.Popen([args.prefect_python, "bench_flows.py"], env=env,
                                      cwd=workdir, stdout=serve_log, stderr=serve_log,
                                      start_new_session=True))
        driver = subprocess.run(
            [args.prefect_python, str(Path(__file__).resolve()), "--side", "prefect",
             "--events", str(args.events), "--burst", str(args.burst),
             "--timeout", str(args.timeout)],
            env=env, cwd=workdir, capture_output=True, text=True,
            timeout=args.timeout * (2 * args.events + 4))
        for line in driver.stdout.splitlines():
            if line.startswith("RESULTS "):
                results: dict[str, Any] = json.loads(line[8:])
                return results
        log.flush()
        serve_log.flush()
        raise RuntimeError(f"the Prefect driver failed:\n{driver.stderr[-3000:]}\n"
                           f"server log:\n{(workdir / 'prefect.log').read_text()[-2000:]}\n"
                           f"serve log:\n{(workdir / 'serve.log').read_text()[-3000:]}")
    finally:
        for proc in reversed(procs):
            stop_group(proc)
        log.close()
        if serve_log is not None:
            serve_log.close()


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """Stop ``proc`` and every process it started (its session's group): Prefect's
    server leaves multiprocessing children behind when only its main process ends."""
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            continue
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the children, once the parent is gone
        except ProcessLookupError:
            pass
        return


def describe(value: Any) -> tuple[str, float | None]:
    if isinstance(value, str):
        return value, None
    if isinstance(value, list):
        m = median(value)
        return f"p50 {m * 1000:9.1f} ms  max {max(value) * 1000:9.1f} ms", m
    return f"{value:9.2f} s", float(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prefect-python", default=os.environ.get("PREFECT_PYTHON"),
                        help="a Python with prefect==3.8.8 installed")
    parser.add_argument("--events", type=int, default=10, help="W1 and W2 runs, one at a time")
    parser.add_argument("--burst", type=int, default=50, help="W3 burst size")
    parser.add_argument("--prefect-poll", type=float, default=1.0,
                        help="PREFECT_RUNNER_POLL_FREQUENCY for the Prefect runner (seconds)")
    parser.add_argument("--timeout", type=float, default=300, help="per wait, seconds")
    parser.add_argument("--side", choices=["prefect"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side == "prefect":
        prefect_side(args)
        return
    print(f"cpus {os.cpu_count()}, python {sys.version.split()[0]}")
    sides: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        print(f"flowbus: load average before {load()}", flush=True)
        (Path(tmp) / "flowbus").mkdir()
        sides["flowbus"] = measure_flowbus(args, Path(tmp) / "flowbus")
        print(f"flowbus: load average after {load()}", flush=True)
        if not args.prefect_python or not Path(args.prefect_python).exists():
            print("Prefect: not measured (no --prefect-python / PREFECT_PYTHON given, or it "
                  "does not exist)")
        else:
            check = subprocess.run([args.prefect_python, "-c",
                                    "import prefect; print(prefect.__version__)"],
                                   capture_output=True, text=True)
            if check.returncode != 0:
                print(f"Prefect: not measured ({args.prefect_python} cannot import prefect)")
            else:
                print(f"Prefect {check.stdout.strip()} (runner poll {args.prefect_poll} s): "
                      f"load average before {load()}", flush=True)
                (Path(tmp) / "prefect").mkdir()
                sides["Prefect"] = measure_prefect(args, Path(tmp) / "prefect")
                print(f"Prefect: load average after {load()}")
    titles = {"W1": f"W1 API run -> body ({args.events} runs)",
              "W2": f"W2 event -> body ({args.events} events)",
              "W3": f"W3 burst of {args.burst} -> last body"}
    for workload, title in titles.items():
        print(title)
        figures = {}
        for side, results in sides.items():
            text, figures[side] = describe(results.get(workload, "not run"))
            print(f"  {side:>8}: {text}")
        ours, theirs = figures.get("flowbus"), figures.get("Prefect")
        if ours and theirs:
            print(f"  Prefect / flowbus: {theirs / ours:,.0f}x")


if __name__ == "__main__":
    main()
