"""The runner's Prometheus metrics, on a registry of its own, and the /metrics server.

Workers do not export metrics themselves: each attempt's outcome carries the
worker's figures (log records shipped and dropped) over the pipe and the runner
adds them here, so one scrape of the runner covers its workers. Labels are
bounded: final state names and deployment names (a deployment is a definition,
not a per-run value).
"""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_DURATION_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600)


class RunnerMetrics:
    """Counters, gauges and histograms of one runner."""

    def __init__(self, registry: CollectorRegistry | None = None, pool: str = "default") -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.runs = Counter("flowbus_runner_runs", "flow runs finished, by final state",
                            ["state", "deployment"], registry=r)
        self.start_latency = Histogram(
            "flowbus_runner_start_latency_seconds",
            "expected start (scheduled) time to Running", buckets=_LATENCY_BUCKETS, registry=r)
        self.duration = Histogram("flowbus_runner_run_duration_seconds",
                                  "Running to final state", buckets=_DURATION_BUCKETS, registry=r)
        # Per work pool, so a dashboard can tell which pool is saturated.
        self.active = Gauge("flowbus_runner_active_runs", "runs held right now", ["pool"],
                            registry=r).labels(pool)
        self.free_slots = Gauge("flowbus_runner_free_slots", "runs it could take now", ["pool"],
                                registry=r).labels(pool)
        self.worker_restarts = Counter("flowbus_runner_worker_restarts",
                                       "worker processes replaced after dying or being killed",
                                       registry=r)
        self.heartbeat_failures = Counter("flowbus_runner_heartbeat_failures",
                                          "in-progress acks or record updates that failed",
                                          registry=r)
        self.logs_shipped = Counter("flowbus_runner_log_records_shipped",
                                    "log records and events published by workers", registry=r)
        self.logs_dropped = Counter("flowbus_runner_log_batches_dropped",
                                    "log/event batches a worker failed to publish", registry=r)
        self.jobs = Counter("flowbus_runner_jobs", "jobs fetched, by what was done with them",
                            ["action"], registry=r)
        self._restarts_seen = 0

    def observe_restarts(self, total: int) -> None:
        if total > self._restarts_seen:
            self.worker_restarts.inc(total - self._restarts_seen)
            self._restarts_seen = total

    def render(self) -> bytes:
        # The SDK's sink in this process (inline runs, serve) is part of the runner's view.
        from flowbus._sink_metrics import REGISTRY as SDK_REGISTRY

        return generate_latest(self.registry) + generate_latest(SDK_REGISTRY)


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the runner's event loop answers."""
    return web.Response(text="ok")


async def start_metrics_server(metrics: RunnerMetrics, host: str, port: int) -> web.AppRunner:
    """Serve ``GET /metrics`` on ``host:port`` (port 0: any free port)."""

    async def handle(_: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application(client_max_size=1024)
    app.router.add_get("/metrics", handle)
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


def bound_port(runner: web.AppRunner) -> int:
    """The port the metrics server listens on (after a start on port 0)."""
    for site in runner.sites:
        server = getattr(site, "_server", None)
        if server is not None and server.sockets:
            return int(server.sockets[0].getsockname()[1])
    raise RuntimeError("the metrics server is not listening")
