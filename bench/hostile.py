"""Hostile input against a gateway and an orchestrator: the answer, how long each part's
event loop was blocked, and how much its memory grew, per abuse.

Starts an embedded NATS, then a gateway and an orchestrator as two child processes of
this script (``--part``), each measuring its own event loop's lag (a 5 ms ticker; the
lag is how late it woke) and its RSS, and reporting both every 50 ms on stdout. The
parent sends each abuse, waits for the dust to settle, and prints per abuse the
answer(s), the largest lag of each loop, and the RSS growth; ``/healthz`` is polled
every 20 ms throughout and its p99 printed at the end. A source on the same NATS
maps its messages with a looping template (each fails to a dead letter)::

    python bench/hostile.py

Aims: no loop blocked longer than 100 ms, RSS growth under 20 MB, ``/healthz`` p99
under 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CE = {"Content-Type": "application/cloudevents+json"}
BATCH = {"Content-Type": "application/cloudevents-batch+json"}
LOOPS = "{% for a in range(10000) %}{% for b in range(10000) %}{% endfor %}{% endfor %}"
# Messages a source receives on this subject, mapped with LOOPS (each fails to a dead letter).
SOURCE_SUBJECT = "hostilesource"
SOURCE_MESSAGES = 10


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def _report_forever() -> None:
    """Every 50 ms: the largest loop lag seen since the last report, and the RSS."""
    worst = 0.0
    last = time.perf_counter()
    reported = last
    while True:
        await asyncio.sleep(0.005)
        now = time.perf_counter()
        worst = max(worst, now - last - 0.005)
        last = now
        if now - reported >= 0.05:
            print(json.dumps({"lag": worst, "rss": _rss()}), flush=True)
            worst, reported = 0.0, now


async def _serve_part(part: str, url: str, namespace: str) -> None:
    from events.bus import Bus
    from events.settings import NatsSettings

    settings = NatsSettings(nats_url=[url], namespace=namespace)
    async with await Bus.connect(settings) as bus:
        reporter = asyncio.create_task(_report_forever())
        if part == "gateway":
            from gateway.service import running
            from gateway.settings import GatewaySettings
            from gateway.sources.manager import run_sources
            from gateway.sources.settings import SourcesSettings

            async with running(bus, GatewaySettings(port=0, auth=False,
                                                    rate_limit_per_second=0)) as gw:
                # Event sources run beside the HTTP edge, as in `flowbus gateway`.
                sources = asyncio.create_task(run_sources(bus, SourcesSettings(), asyncio.Event()))
                print(json.dumps({"url": gw.url}), flush=True)
                await asyncio.Event().wait()
                sources.cancel()
        else:
            from orchestrator.service import Orchestrator
            from orchestrator.settings import OrchestratorSettings

            orchestrator = Orchestrator(bus, OrchestratorSettings(fetch_wait_seconds=0.1))
            print(json.dumps({"url": ""}), flush=True)
            await orchestrator.run(asyncio.Event())
        reporter.cancel()


class Part:
    """A child process running one part, its reports collected."""

    def __init__(self, part: str, url: str, namespace: str, secrets_key: str) -> None:
        self.name = part
        # Webhook secrets are sealed at rest: every part needs the same key.
        env = {**os.environ, "FLOWBUS_SECRETS_KEY": secrets_key}
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--part", part, "--nats", url, "--namespace", namespace],
            stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env)
        self.reports: list[dict[str, float]] = []
        self.url = ""

    async def start(self) -> None:
        assert self.proc.stdout is not None
        while not self.url and self.proc.poll() is None:
            line = await asyncio.to_thread(self.proc.stdout.readline)
            data = json.loads(line) if line.startswith("{") else {}
            if "url" in data:
                self.url = data["url"] or "-"
        asyncio.get_running_loop().run_in_executor(None, self._read)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("{"):
                self.reports.append(json.loads(line))

    def mark(self) -> int:
        return len(self.reports)

    def since(self, mark: int) -> tuple[float, float]:
        """(largest lag in ms, RSS growth in MB) of the reports after ``mark``."""
        window = self.reports[max(0, mark - 1):]
        if not window:
            return 0.0, 0.0
        lag = max(r["lag"] for r in window) * 1000
        return lag, (window[-1]["rss"] - window[0]["rss"]) / 1e6

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _deep(depth: int) -> str:
    return ('{"specversion":"1.0","id":"deep","source":"/h","type":"h.deep","data":'
            + "[" * depth + "]" * depth + "}")


def _event(i: int, data: Any = None) -> dict[str, Any]:
    return {"specversion": "1.0", "id": f"h-{i}", "source": "/h", "type": "h.list", "data": data}


async def _abuses(http: Any, base: str, nats_url: str) -> list[tuple[str, Any]]:
    """(name, coroutine giving the answer) of each abuse, in order."""
    async def post(path: str, body: Any, headers: dict[str, str] | None = None) -> str:
        data = body if isinstance(body, bytes | str) else json.dumps(body)
        async with http.post(base + path, data=data, headers=headers or
                             {"Content-Type": "application/json"}) as r:
            return f"{r.status}"

    async def deep_everywhere() -> str:
        answers = [await post("/events", _deep(10_000), CE),
                   await post("/hooks/open", "[" * 10_000 + "]" * 10_000),
                   await post("/api/v1/variables", '{"name":"v","value":' + "[" * 10_000
                              + "]" * 10_000 + "}")]
        return ", ".join(answers)

    async def huge_batch() -> str:
        body = json.dumps([_event(i) for i in range(100_000)]).encode()
        return await post("/events", body, BATCH)

    async def template_bombs() -> str:
        answers = []
        for template in ("{{ 'x' * 10**8 }}", "{{ 'x'|center(1000000000) }}"):
            answers.append(await post("/api/v1/webhooks", {
                "slug": "b", "verifier": "none", "template": {"type": "a.b", "data": template}}))
        answers.append(await post("/hooks/loops", {}))
        return ", ".join(answers)

    async def cel_over_lists() -> str:
        answers = [await post("/events", _event(1, {"xs": list(range(256))}), CE),
                   await post("/events", _event(2, {"xs": list(range(100_000))}), CE)]
        return ", ".join(answers)

    async def trigger_template_bomb() -> str:
        return await post("/events", {**_event(3), "type": "h.heavy"}, CE)

    async def source_mapping_loops() -> str:
        import nats

        nc = await nats.connect(nats_url)
        try:
            for i in range(SOURCE_MESSAGES):
                await nc.publish(f"{SOURCE_SUBJECT}.x", json.dumps({"i": i}).encode())
            await nc.flush()
        finally:
            await nc.close()
        letters: list[Any] = []
        deadline = time.monotonic() + 60
        while len(letters) < SOURCE_MESSAGES and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            async with http.get(base + "/api/v1/sources/loopy/dead-letters") as r:
                letters = (await r.json())["items"]
        return f"{len(letters)} dead letters"

    return [("deep JSON (10,000 levels) on /events, /hooks, REST", deep_everywhere()),
            ("batch of 100,000 events", huge_batch()),
            ("template bombs (creation x2, delivery)", template_bombs()),
            ("CEL macro over 256 and 100,000-item lists", cel_over_lists()),
            ("trigger parameters with nested 10k loops", trigger_template_bomb()),
            (f"source mapping with nested 10k loops x{SOURCE_MESSAGES}", source_mapping_loops())]


async def _setup(http: Any, base: str, nats_url: str) -> None:
    async with http.post(base + "/api/v1/sources", json={
            "name": "loopy", "kind": "nats", "connection": {"url": nats_url},
            "subscription": {"subject": f"{SOURCE_SUBJECT}.>"},
            "mapping": {"type": "h.src", "data": LOOPS}}) as r:
        assert r.status == 201, await r.text()
    for hook in ({"slug": "open", "verifier": "none"},
                 {"slug": "loops", "verifier": "none", "template": {"type": "a.b", "data": LOOPS}}):
        async with http.post(base + "/api/v1/webhooks", json=hook) as r:
            assert r.status == 201, await r.text()
    for name, trigger in (
        ("cel", {"expect": ["h.list"], "when": "event.data.xs.exists(x, x == -1)"}),
        ("heavy", {"expect": ["h.heavy"], "parameters": {"n": LOOPS}}),
    ):
        async with http.post(base + "/api/v1/deployments", json={
                "name": name, "flow_name": name, "entrypoint": "flows.py:f",
                "triggers": [trigger]}) as r:
            assert r.status == 201, await r.text()


async def _health(http: Any, base: str, times: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        started = time.perf_counter()
        async with http.get(base + "/healthz") as r:
            await r.read()
        times.append(time.perf_counter() - started)
        await asyncio.sleep(0.02)


async def main() -> None:
    import uuid

    import aiohttp

    from events.embedded import EmbeddedNats
    from events.secretbox import SecretBox

    with tempfile.TemporaryDirectory() as data, EmbeddedNats(Path(data)) as nats:
        namespace = f"hostile{uuid.uuid4().hex[:6]}"
        key = os.environ.get("FLOWBUS_SECRETS_KEY") or SecretBox.generate_key()
        parts = [Part("gateway", nats.url, namespace, key),
                 Part("orchestrator", nats.url, namespace, key)]
        try:
            for part in parts:
                await part.start()
            base = parts[0].url
            timeout = aiohttp.ClientTimeout(total=120)
            async with aiohttp.ClientSession(timeout=timeout) as http, \
                    aiohttp.ClientSession(timeout=timeout) as probe:
                await _setup(http, base, nats.url)
                await asyncio.sleep(3.0)  # the orchestrator loads and compiles the deployments
                health: list[float] = []
                stop = asyncio.Event()
                prober = asyncio.create_task(_health(probe, base, health, stop))
                print(f"{'abuse':52} {'answer':>18} {'gw lag ms':>10} {'orch lag ms':>11} "
                      f"{'gw RSS MB':>10} {'orch RSS MB':>11}")
                for name, abuse in await _abuses(http, base, nats.url):
                    marks = [p.mark() for p in parts]
                    answer = await abuse
                    await asyncio.sleep(1.5)  # the orchestrator handles what was stored
                    (g_lag, g_rss), (o_lag, o_rss) = (p.since(m) for p, m in zip(parts, marks,
                                                                                  strict=True))
                    print(f"{name:52} {answer:>18} {g_lag:10.1f} {o_lag:11.1f} "
                          f"{g_rss:10.1f} {o_rss:11.1f}", flush=True)
                stop.set()
                await prober
            ordered = sorted(health)
            p99 = ordered[int(len(ordered) * 0.99) - 1] if ordered else 0.0
            print(f"/healthz: {len(health)} probes, median {statistics.median(health) * 1000:.1f} "
                  f"ms, p99 {p99 * 1000:.1f} ms, max {ordered[-1] * 1000:.1f} ms")
            print(f"load average {os.getloadavg()[0]:.2f} (1 min)")
        finally:
            for part in parts:
                part.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["gateway", "orchestrator"])
    parser.add_argument("--nats")
    parser.add_argument("--namespace")
    args = parser.parse_args()
    if args.part:
        asyncio.run(_serve_part(args.part, args.nats, args.namespace))
    else:
        asyncio.run(main())
