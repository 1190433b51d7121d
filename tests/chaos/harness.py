"""The chaos harness: flowbus as separate processes, events streamed in, faults injected.

Used by ``tests/chaos`` (a short version CI runs) and ``bench/chaos.py`` (the long
one, printing the figures). One NATS node or a 3-node JetStream cluster (routes on
loopback, every stream and bucket with 3 replicas); a gateway, two orchestrators
(leader lease) and two runners, each a ``flowbus`` subprocess. A deployment's trigger
runs a flow that journals its event id while its body and its tasks run, and each
task's completion (``tests.chaos.figures``); a client posts events to the gateway and
resends a refused one with the same id. Faults (SIGKILL, SIGSTOP, restart) hit each
part at random points; the journal tells what ran, how often, and whether at once.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

from events.bus import Bus
from events.embedded import find_nats_server, free_port
from events.records import FlowRun
from events.runs import FlowRunStateEvent
from events.settings import NatsSettings
from tests.chaos.figures import Figures, History, analyse

ROOT = Path(__file__).resolve().parents[2]
HEADERS = {"Content-Type": "application/cloudevents+json"}
RUNNER_ENV = {"FLOWBUS_RUNNER_HEARTBEAT_INTERVAL": "0.5", "FLOWBUS_RUNNER_ACK_WAIT": "3",
              "FLOWBUS_RUNNER_FETCH_WAIT": "0.2", "FLOWBUS_RUNNER_LIMIT": "4"}

FLOW = """
import os, time
from flowbus import flow, task


def write(path: str, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, line.encode())
    os.close(fd)


def ticks(event_id: str, path: str, until: float) -> None:
    while True:
        write(path, f"tick {event_id} {os.getpid()} {time.time()}\\n")
        if time.time() >= until:
            return
        time.sleep(0.05)


@task
def step(event_id: str, path: str, n: int, seconds: float) -> int:
    ticks(event_id, path, time.time() + seconds)
    write(path, f"task {event_id}/{n} {os.getpid()} {time.time()}\\n")
    return n


@flow(retries=5)
def journal(event_id: str, path: str, seconds: float, tasks: int = 3) -> str:
    share = seconds / (tasks + 1)  # the body's time, split between its tasks and itself
    for n in range(tasks):
        step(event_id, path, n, share)
        # The call returned: the task's result is stored for reuse (flowbus._durable).
        write(path, f"done {event_id}/{n} {os.getpid()} {time.time()}\\n")
    ticks(event_id, path, time.time() + share)
    write(path, f"end {event_id} {os.getpid()} {time.time()}\\n")
    return event_id
"""


def _die_with_us() -> None:
    """In a child: SIGKILL when the harness dies, so no part outlives a failed run."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class NatsNodes:
    """One nats-server, or ``size`` of them routed into one JetStream cluster."""

    def __init__(self, base: Path, size: int) -> None:
        self.base = base
        self.size = size
        self.ports = [free_port() for _ in range(size)]
        self.routes = [free_port() for _ in range(size)] if size > 1 else []
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * size

    @property
    def urls(self) -> list[str]:
        return [f"nats://127.0.0.1:{port}" for port in self.ports]

    def _config(self, i: int) -> Path:
        node = self.base / f"nats{i}"
        node.mkdir(parents=True, exist_ok=True)
        text = (f'server_name: "n{i}"\nhost: "127.0.0.1"\nport: {self.ports[i]}\n'
                f'jetstream {{\n  store_dir: "{node / "js"}"\n}}\n')
        if self.size > 1:
            routes = ", ".join(f"nats-route://127.0.0.1:{p}" for p in self.routes)
            text += (f'cluster {{\n  name: "flowbus-chaos"\n  host: "127.0.0.1"\n'
                     f"  port: {self.routes[i]}\n  routes: [{routes}]\n}}\n")
        path = node / "nats.conf"
        path.write_text(text)
        return path

    def start(self, i: int) -> None:
        log = (self.base / f"nats{i}.log").open("ab")
        self.procs[i] = subprocess.Popen([find_nats_server(), "-c", str(self._config(i))],
                                         stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, preexec_fn=_die_with_us)
        log.close()

    def start_all(self) -> None:
        for i in range(self.size):
            self.start(i)

    def kill(self, i: int) -> None:
        proc = self.procs[i]
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10)

    def stop_all(self) -> None:
        for i in range(self.size):
            self.kill(i)


class Part:
    """One ``flowbus`` subprocess (gateway, orchestrator or runner), restartable."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], logs: Path) -> None:
        self.name, self.args, self.env, self.logs = name, args, env, logs
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def ident(self) -> str:
        """The runner id of the current process (runners only)."""
        return f"{self.name}-{self.starts}"

    def start(self) -> None:
        self.starts += 1
        log = (self.logs / f"{self.name}.{self.starts}.log").open("wb")
        env = {**self.env, "FLOWBUS_RUNNER_RUNNER_ID": self.ident} if self.args == ["runner"] \
            else self.env
        self.proc = subprocess.Popen([sys.executable, "-m", "flowbus.cli", *self.args],
                                     env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, preexec_fn=_die_with_us)
        log.close()

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(10)


async def post_event(session: aiohttp.ClientSession, url: str, event_id: str,
                     deadline: float) -> bool:
    """Post one event until the gateway accepts it (same id every time)."""
    body = {"specversion": "1.0", "id": event_id, "source": "chaos", "type": "chaos.tick",
            "datacontenttype": "application/json", "data": {"n": event_id}}
    while time.monotonic() < deadline:
        try:
            async with session.post(url, data=json.dumps(body), headers=HEADERS,
                                    timeout=aiohttp.ClientTimeout(total=5)) as resp:
                if resp.status < 300:
                    return True
        except (aiohttp.ClientError, TimeoutError):
            pass
        await asyncio.sleep(0.2)
    return False


class Chaos:
    """The whole system under test, in ``base``."""

    def __init__(self, base: Path, *, nodes: int, seconds: float = 0.3, tasks: int = 3,
                 durable_tasks: bool = True) -> None:
        self.base = base
        self.tasks, self.durable_tasks = tasks, durable_tasks
        self.nats = NatsNodes(base, nodes)
        self.journal = base / "journal"
        self.seconds = seconds
        self.gateway_port = free_port()
        self.parts: dict[str, Part] = {}
        self.faults: list[tuple[float, str, str]] = []
        self.history: History = []
        self.namespace = f"chaos{random.randrange(10**6)}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWBUS_")}
        env.update({"FLOWBUS_NATS_URL": ",".join(self.nats.urls),
                    "FLOWBUS_NAMESPACE": self.namespace, "FLOWBUS_HOME": str(self.base / "home"),
                    "FLOWBUS_STREAM_REPLICAS": str(self.nats.size),
                    "FLOWBUS_GATEWAY_AUTH": "false", "PYTHONPATH": str(ROOT), **RUNNER_ENV})
        return env

    async def run_states(self, accepted: set[str]) -> dict[str, list[str]]:
        """The final states of the runs each accepted event produced (from the records)."""
        states: dict[str, list[str]] = {event_id: [] for event_id in accepted}
        async with await Bus.connect(self.settings(), name="chaos-records") as bus:
            kv = await bus.kv(bus.layout.flow_runs)
            for key in await kv.keys():
                entry = await kv.get(key, latest=True)
                if entry is None:
                    continue
                run = FlowRun.model_validate_json(entry.value)
                event_id = run.parameters.get("event_id")
                if event_id in states:
                    states[event_id].append(run.state.name)
        return states

    async def _not_completed(self, accepted: set[str]) -> dict[str, list[str]]:
        try:
            states = await self.run_states(accepted)
        except Exception as exc:  # NATS still settling after a fault: count it as not yet
            return {"(records unreadable)": [repr(exc)]}
        return {e: s for e, s in states.items() if s != ["Completed"]}

    def settings(self) -> NatsSettings:
        return NatsSettings(nats_url=self.nats.urls, namespace=self.namespace,
                            stream_replicas=self.nats.size)

    async def start(self) -> None:
        logs = self.base / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        self.nats.start_all()
        await self._layout()
        await self._deploy()
        env = self.env()
        self.parts = {
            "gateway": Part("gateway", ["gateway", "--port", str(self.gateway_port)], env, logs),
            "orchestrator-a": Part("orchestrator-a", ["orchestrator"], env, logs),
            "orchestrator-b": Part("orchestrator-b", ["orchestrator"], env, logs),
            "runner-a": Part("runner-a", ["runner"], env, logs),
            "runner-b": Part("runner-b", ["runner"], env, logs),
        }
        for part in self.parts.values():
            part.start()
        await self._wait_gateway()
        await self._wait_ready()

    async def _wait_ready(self) -> None:
        """Every orchestrator and runner said it is ready (the faults hit a healthy system)."""
        for _ in range(1200):
            logs = [(part.logs / f"{part.name}.{part.starts}.log")
                    for name, part in self.parts.items() if name != "gateway"]
            if all(" ready" in log.read_text(errors="replace") for log in logs if log.exists()):
                break
            await asyncio.sleep(0.1)
        else:
            raise RuntimeError("an orchestrator or a runner did not become ready")
        # "ready" comes once the catalog is loaded; the leader starts fetching from its
        # durable consumer (created with the stream) just after. Events sent earlier
        # would wait for it, so the streaming waits for a fetch to keep timings honest.
        async with await Bus.connect(self.settings(), name="chaos-ready") as bus:
            for _ in range(1200):
                consumers = await bus.consumers(bus.layout.events_stream)
                if any(c.name == "orchestrator" and (c.num_waiting or 0) > 0 for c in consumers):
                    return
                await asyncio.sleep(0.1)
        raise RuntimeError("no orchestrator started consuming events")

    async def _layout(self) -> None:
        for _ in range(150):  # a cluster elects its JetStream meta leader first
            try:
                async with await Bus.connect(self.settings()):
                    return
            except Exception:
                await asyncio.sleep(0.2)
        raise RuntimeError("the NATS layout could not be created")

    async def _deploy(self) -> None:
        from flowbus.deploying import check_specs, register
        from flowbus.project import BuildConfig, DeploymentSpec, DeploySettings

        code = self.base / "code"
        code.mkdir(parents=True, exist_ok=True)
        (code / "flows.py").write_text(textwrap.dedent(FLOW))
        params = {"event_id": "{{ event.id }}", "path": str(self.journal),
                  "seconds": self.seconds, "tasks": self.tasks}
        spec = DeploymentSpec(name="chaos", entrypoint="flows.py:journal",
                              triggers=[{"expect": ["chaos.tick"], "parameters": params}],
                              durable_tasks=self.durable_tasks)
        infos = await asyncio.to_thread(check_specs, code, [spec])
        async with await Bus.connect(self.settings()) as bus:
            await register(bus, code, [spec], infos, BuildConfig(include=["*.py"]),
                           settings=DeploySettings(), source="chaos")

    async def _wait_gateway(self) -> None:
        async with aiohttp.ClientSession() as session:
            for _ in range(1200):  # a loaded machine starts Python slowly
                try:
                    async with session.get(f"http://127.0.0.1:{self.gateway_port}/readyz") as r:
                        if r.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError("the gateway did not come up")

    async def fault(self, what: str) -> None:
        """Inject one fault and undo it (restart, SIGCONT) after its time."""
        if what in ("runner-kill", "runner-stop"):
            part = self._busiest_runner()
            self.faults.append((time.time(), what, part.ident))
            if what == "runner-kill":
                part.kill()
                await asyncio.sleep(1)
                part.start()
            else:
                part.signal(signal.SIGSTOP)
                await asyncio.sleep(8)  # past the lease, the stale period and the ack wait
                part.signal(signal.SIGCONT)
        elif what in ("orchestrator-kill", "gateway-kill"):
            name = "gateway" if what == "gateway-kill" else random.choice(
                ["orchestrator-a", "orchestrator-b"])
            self.faults.append((time.time(), what, name))
            self.parts[name].kill()
            await asyncio.sleep(1)
            self.parts[name].start()
        elif what == "nats-node-kill":
            node = random.randrange(self.nats.size)
            self.faults.append((time.time(), what, f"n{node}"))
            self.nats.kill(node)
            await asyncio.sleep(3)
            self.nats.start(node)
        else:
            raise ValueError(f"unknown fault {what!r}")

    def _busiest_runner(self) -> Part:
        """The runner holding the most runs now (a fault there hits runs, not idle time)."""
        latest: dict[str, tuple[str, str | None]] = {}
        for _, run_id, state, runner, _ in self.history:
            latest[run_id] = (state, runner)
        runners = [self.parts["runner-a"], self.parts["runner-b"]]
        random.shuffle(runners)
        return max(runners, key=lambda part: sum(
            1 for state, runner in latest.values()
            if runner == part.ident and state in ("Pending", "Running")))

    async def _watch(self, since: datetime) -> None:
        """Every state change of a run, from the state events (the events stream keeps
        them all, where a KV watch may skip a record rewritten meanwhile)."""
        while True:
            try:
                async with await Bus.connect(self.settings(), name="chaos-watch") as bus:
                    async for event in bus.tail("flowbus.flow-run.*", since=since):
                        run = FlowRunStateEvent.model_validate(event.data)
                        self.history.append((event.time.timestamp(), run.id, run.state.name,
                                             run.runner_id, run.run_count))
                        since = event.time
            except asyncio.CancelledError:
                raise
            except Exception:
                await asyncio.sleep(0.5)

    async def run(self, kind: str, events: int, rate: float, faults: int,
                  settle: float) -> Figures:
        """Stream ``events`` at ``rate``/s with ``faults`` of ``kind`` at random points."""
        url = f"http://127.0.0.1:{self.gateway_port}/events"
        duration = events / rate
        accepted: set[str] = set()
        prefix = f"{kind}-{random.randrange(10**6)}"
        deadline = time.monotonic() + duration + settle

        async def send(n: int) -> None:
            if await post_event(session, url, f"{prefix}-{n}", deadline):
                accepted.add(f"{prefix}-{n}")

        async def inject() -> None:
            for at in sorted(random.uniform(0.1, 0.8) * duration for _ in range(faults)):
                await asyncio.sleep(max(0.0, at - (time.monotonic() - began)))
                await self.fault(kind)

        watcher = asyncio.create_task(self._watch(datetime.now(UTC)))
        async with aiohttp.ClientSession() as session:
            began = time.monotonic()
            chaos = asyncio.create_task(inject())
            senders = []
            for n in range(events):
                senders.append(asyncio.create_task(send(n)))
                await asyncio.sleep(max(0.0, began + (n + 1) / rate - time.monotonic()))
            await asyncio.gather(*senders)
            await chaos
        not_completed: dict[str, list[str]] = {}
        try:
            while time.monotonic() < deadline:
                done = analyse(kind, self.journal, accepted, self.faults, self.history)
                if done.executed >= len(accepted):
                    break
                await asyncio.sleep(0.5)
            while True:  # every run recorded Completed (a retry may still be finishing)
                not_completed = await self._not_completed(accepted)
                if not not_completed or time.monotonic() >= deadline:
                    break
                await asyncio.sleep(1)
            await asyncio.sleep(1)  # late duplicates, if any, show up in the journal
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
        figures = analyse(kind, self.journal, accepted, self.faults, self.history)
        figures.not_completed = not_completed
        self.faults.clear()
        self.history.clear()
        return figures

    def stop(self) -> None:
        for part in self.parts.values():
            part.kill()
        self.nats.stop_all()


def load() -> str:
    """Load average of the machine, for the figures."""
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} / {five:.1f} (1 / 5 min) on {os.cpu_count()} cores"
