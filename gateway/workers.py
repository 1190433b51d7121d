"""Several gateway processes sharing one port (``SO_REUSEPORT``), for more than one core.

The gateway is one asyncio loop: one core. ``flowbus gateway --workers N`` starts N
processes that each bind the same port with ``SO_REUSEPORT``, so the kernel spreads
connections among them; each has its own NATS connection. The parent only
supervises: SIGTERM/SIGINT is passed on, every worker drains as a single gateway
does, and a worker that dies takes the others down (the orchestrating system
restarts the whole unit, rather than running short-handed unnoticed).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import signal
from collections.abc import Callable, Sequence
from multiprocessing.process import BaseProcess

from events.embedded import free_port
from events.settings import NatsSettings
from gateway.service import serve
from gateway.settings import GatewaySettings

log = logging.getLogger("flowbus.gateway")


def _worker(nats_settings: NatsSettings, settings: GatewaySettings) -> None:
    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve(nats_settings, settings, stop=stop, reuse_port=True)

    asyncio.run(main())


def _alive(workers: Sequence[BaseProcess]) -> bool:
    return all(w.is_alive() for w in workers)


async def serve_workers(
    nats_settings: NatsSettings,
    settings: GatewaySettings,
    workers: int,
    *,
    stop: asyncio.Event,
    announce: Callable[[str], None] | None = None,
) -> int:
    """Run ``workers`` gateway processes on one port until ``stop``; the worst exit code."""
    port = settings.port or free_port(settings.host)
    settings = settings.model_copy(update={"port": port})
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=_worker, args=(nats_settings, settings), name=f"gateway-{i}")
        for i in range(workers)
    ]
    for process in processes:
        process.start()
    if announce is not None:
        announce(f"http://{settings.host}:{port} ({workers} workers)")
    while not stop.is_set() and _alive(processes):
        try:
            await asyncio.wait_for(stop.wait(), 0.5)
        except TimeoutError:
            continue
    if not stop.is_set():
        log.error("a gateway worker exited; stopping the others")
    for process in processes:
        if process.is_alive() and process.pid is not None:
            process.terminate()  # SIGTERM: the worker drains
    deadline = settings.drain_timeout_seconds + 10
    for process in processes:
        await asyncio.to_thread(process.join, deadline)
        if process.is_alive():
            process.kill()
            await asyncio.to_thread(process.join, 5)
    return max(abs(p.exitcode or 0) for p in processes)
