"""The status server of a task worker (``serve(..., status_server_port=)``), on loopback.

``GET /status`` answers what Prefect 3's task worker status server answers (its
fields: ``client_id``, ``started_at``, ``stopping``, ``limit``, ``current``,
``available``, ``tasks``, ``finished``, ``in_flight``); ``GET /health`` answers 200
while the worker serves and 503 once it stops. Prefect listens on every interface;
flowbus only on 127.0.0.1 (a probe in the same pod or host reaches it).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

HOST = "127.0.0.1"


def _status(worker: Any) -> dict[str, Any]:
    return {
        "client_id": worker.worker_id,
        "started_at": worker.started_at.isoformat(),
        "stopping": worker.stop.is_set(),
        "limit": worker.settings.limit,
        "current": worker.unfinished,
        "available": max(0, worker.settings.limit - worker.unfinished),
        "tasks": sorted(worker.tasks),
        "finished": dict(worker.finished),
        "in_flight": {key: {run: start.isoformat() for run, start in runs.items()}
                      for key, runs in worker.in_flight.items()},
    }


async def start_status_server(worker: Any, port: int) -> tuple[web.AppRunner, int]:
    """Serve ``/status`` and ``/health`` of ``worker`` on loopback ``port`` (0: any free
    port); the runner (to clean up) and the bound port."""

    async def status(_: web.Request) -> web.Response:
        return web.json_response(_status(worker))

    async def health(_: web.Request) -> web.Response:
        stopping = worker.stop.is_set()
        return web.json_response({"status": "stopping" if stopping else "ok"},
                                 status=503 if stopping else 200)

    app = web.Application(client_max_size=1024)
    app.router.add_get("/status", status)
    app.router.add_get("/health", health)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, HOST, port)
    await site.start()
    server = site._server
    sockets = getattr(server, "sockets", None) or []
    bound = int(sockets[0].getsockname()[1]) if sockets else port
    return runner, bound


__all__ = ["HOST", "start_status_server"]
