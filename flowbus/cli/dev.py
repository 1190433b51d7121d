"""``flowbus dev``: the whole system on one machine.

An embedded nats-server with JetStream in a local data directory, then the
gateway, the orchestrator and one runner on that bus; ``--project DIR`` deploys the
``flowbus.yaml`` found there. Ctrl-C stops the services first, NATS last; a second
Ctrl-C stops at once (runs in flight are recovered at the next start).

It refuses to start when one of its ports is taken, naming the option that changes
it, and never uses a NATS server it did not start. The URL of its NATS is written to
``$FLOWBUS_HOME/dev/nats.url`` while it runs: the CLI in another shell finds it there
when ``FLOWBUS_NATS_URL`` is not set.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import click

from flowbus.cli._api import dev_api_file
from flowbus.cli._common import LOG_LEVEL, configure_service_logging, fail, nats_settings

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"


def flowbus_home() -> Path:
    return Path(os.environ.get("FLOWBUS_HOME") or str(Path.home() / ".flowbus"))


def _default_data_dir() -> Path:
    return flowbus_home() / "dev"


def dev_url_file() -> Path:
    """Where a running ``flowbus dev`` leaves the URL of its NATS for the CLI."""
    return flowbus_home() / "dev" / "nats.url"


def _write_url(url: str, path: Path | None = None) -> None:
    path = path or dev_url_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(url + "\n")


def _forget_url(url: str, path: Path | None = None) -> None:
    """Remove the URL file if it still names our server (another dev may have replaced it)."""
    path = path or dev_url_file()
    with contextlib.suppress(OSError):
        if path.read_text().strip() == url:
            path.unlink()


def _check_ports(ports: list[tuple[str, int, str]]) -> None:
    """Exit 2 naming the first (host, port, option) that is taken."""
    from events.embedded import port_taken

    for host, port, option in ports:
        if port_taken(host, port):
            fail(f"port {port} on {host} is already in use (another `flowbus dev`, or another "
                 f"program?); choose another with {option} (0 picks a free port)", 2)


@click.command()
@click.option("--nats-port", type=click.IntRange(0, 65535), default=4222, show_default=True,
              help="port of the embedded NATS (0: any free port)")
@click.option("--gateway-port", type=click.IntRange(0, 65535), default=8080, show_default=True,
              help="port of the HTTP gateway (0: any free port)")
@click.option("--orchestrator-metrics-port", type=click.IntRange(0, 65535), default=None,
              help="port of the orchestrator's /metrics  [default: "
                   "FLOWBUS_ORCHESTRATOR_METRICS_PORT, else any free port]")
@click.option("--runner-metrics-port", type=click.IntRange(0, 65535), default=None,
              help="port of the runner's /metrics  [default: FLOWBUS_RUNNER_METRICS_PORT, "
                   "else any free port]")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="where NATS keeps its data (default: $FLOWBUS_HOME/dev)")
@click.option("--project", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=None, help="deploy the flowbus.yaml of this directory at start")
@LOG_LEVEL
def dev(nats_port: int, gateway_port: int, orchestrator_metrics_port: int | None,
        runner_metrics_port: int | None, data_dir: Path | None, project: Path | None,
        log_level: str | None) -> None:
    """Run flowbus locally: embedded NATS with JetStream plus the flowbus services."""
    from events.embedded import EmbeddedNats, NatsServerError
    from events.errors import FlowbusError
    from flowbus.cli.gateway_cmd import gateway_settings
    from flowbus.cli.orchestrator_cmd import orchestrator_settings
    from flowbus.cli.runner_cmd import runner_settings

    configure_service_logging(log_level)
    # FLOWBUS_RUNNER_* apply; the pool is 'default'.
    runner = runner_settings(pool="default")
    runner = runner_settings(pool="default", metrics_port=_pick(runner_metrics_port,
                                                                runner.metrics_port))
    orch = orchestrator_settings()
    orch = orchestrator_settings(metrics_port=_pick(orchestrator_metrics_port, orch.metrics_port))
    # Auth is off in dev, so a new user can curl at once; said loudly, below.
    # Loopback only, and only localhost names in Host: a web page the developer visits
    # cannot reach it by DNS rebinding (auth is off, and deployments run code).
    from gateway.limits import LOOPBACK_HOSTS

    gw_settings = gateway_settings(port=gateway_port, auth=False, host="127.0.0.1",
                                   allowed_hosts=list(LOOPBACK_HOSTS))
    _check_ports([("127.0.0.1", nats_port, "--nats-port"),
                  (gw_settings.host, gateway_port, "--gateway-port"),
                  (orch.metrics_host, orch.metrics_port, "--orchestrator-metrics-port"),
                  (runner.metrics_host, runner.metrics_port, "--runner-metrics-port")])
    data_dir = data_dir or _default_data_dir()
    server = EmbeddedNats(data_dir, port=nats_port)
    try:
        server.start()
    except NatsServerError as exc:
        fail(f"{exc}; choose another port with --nats-port (0 picks a free port)", 2)
    url = server.url
    try:
        os.environ["FLOWBUS_NATS_URL"] = url
        # Secrets (webhooks, automations, blocks) are sealed in dev too: with no key set,
        # with a key file made once in FLOWBUS_HOME (mode 0600).
        from events.sealed import ENV_KEY, dev_box

        os.environ.setdefault(ENV_KEY, dev_box(flowbus_home()))
        _write_url(url)
        settings = nats_settings(nats_url=[url])
        asyncio.run(_serve(settings, server, data_dir, gw_settings, project, runner, orch))
    except FlowbusError as exc:
        fail(str(exc))
    finally:
        _forget_url(url)
        server.close()
        click.echo("flowbus dev stopped.")


def _pick(option: int | None, setting: int | None) -> int:
    """The flag, else the environment's setting, else 0 (any free port)."""
    if option is not None:
        return option
    return setting if setting is not None else 0


@contextlib.asynccontextmanager
async def _orchestrator(bus: Any, settings: Any) -> AsyncIterator[str]:
    """The orchestrator, with its /metrics; yields that URL."""
    from prometheus_client import start_http_server

    from orchestrator.automations.settings import AutomationSettings
    from orchestrator.automations.targets import DEV_ALLOWED
    from orchestrator.service import Orchestrator

    # A developer's webhook receivers run on loopback and private networks.
    automations = AutomationSettings()
    automations = automations.model_copy(
        update={"allowed_networks": [*automations.allowed_networks, *DEV_ALLOWED]})
    orchestrator = Orchestrator(bus, settings, automation_settings=automations)
    metrics_server, _ = start_http_server(settings.metrics_port, settings.metrics_host,
                                          registry=orchestrator.metrics.registry)
    stop = asyncio.Event()
    task = asyncio.create_task(orchestrator.run(stop))
    try:
        yield f"http://{settings.metrics_host}:{metrics_server.server_port}/metrics"
    finally:
        stop.set()
        await task
        metrics_server.shutdown()


@contextlib.asynccontextmanager
async def _runner(bus: Any, settings: Any, runner_settings: Any) -> AsyncIterator[str]:
    """The runner, with its /metrics; yields that URL."""
    from runners.service import Runner, make_executor

    runner = Runner(bus, runner_settings, make_executor(settings, runner_settings))
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(runner.run(stop, ready))
    await asyncio.wait({task, asyncio.create_task(ready.wait())}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()  # it failed to start: say why
    try:
        yield f"http://{runner_settings.metrics_host}:{runner.metrics_port}/metrics"
    finally:
        stop.set()
        await task


@contextlib.asynccontextmanager
async def _sources(bus: Any, registry: Any) -> AsyncIterator[None]:
    """The event sources, as the gateway runs them (docs/sources.md)."""
    from gateway.sources.manager import run_sources
    from gateway.sources.settings import SourcesSettings

    stop = asyncio.Event()
    task = asyncio.create_task(run_sources(bus, SourcesSettings(), stop, registry=registry))
    try:
        yield
    finally:
        stop.set()
        await task


async def _deploy(bus: Any, project_dir: Path) -> list[str]:
    from flowbus.deploying import deploy_project
    from flowbus.project import PROJECT_FILE, load_project

    root = await asyncio.to_thread(project_dir.resolve)
    project = load_project(root / PROJECT_FILE)
    outcome = await deploy_project(bus, root, project, source="flowbus/dev")
    return [d.deployment.name for d in outcome.deployments]


def _on_signal(stop: asyncio.Event, server: Any) -> None:
    """First Ctrl-C: drain and stop. Second: stop NATS and exit at once."""
    if not stop.is_set():
        stop.set()
        return
    import logging

    click.echo("second Ctrl-C: stopping now; runs in flight are recovered at the next start",
               err=True)
    import multiprocessing

    logging.disable(logging.CRITICAL)  # no reconnect warnings while NATS goes away
    for worker in multiprocessing.active_children():  # the runner's worker processes
        worker.kill()
    _forget_url(server.url)
    with contextlib.suppress(OSError):
        dev_api_file().unlink()
    server.stop()
    os._exit(130)


async def _serve(settings: Any, server: Any, data_dir: Path, gw_settings: Any,
                 project: Path | None, runner_settings: Any, orch_settings: Any) -> None:
    from events.bus import Bus
    from gateway.context import GATEWAY
    from gateway.service import running

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, _on_signal, stop, server)
    async with contextlib.AsyncExitStack() as services:
        bus = await services.enter_async_context(await Bus.connect(settings))
        runner_metrics = await services.enter_async_context(
            _runner(bus, settings, runner_settings))
        orch_metrics = await services.enter_async_context(_orchestrator(bus, orch_settings))
        gateway = await services.enter_async_context(running(bus, gw_settings))
        await services.enter_async_context(
            _sources(bus, gateway.app[GATEWAY].metrics.registry))
        deployed = await _deploy(bus, project) if project else []
        api_url = f"{gateway.url}/api/v1"
        _write_url(api_url, dev_api_file())  # `flowbus webhook`, `flowbus variable` find it
        services.callback(_forget_url, api_url, dev_api_file())
        click.echo(f"NATS JetStream   {server.url}  (data in {data_dir})")
        click.echo(f"namespace        {bus.layout.namespace}")
        click.echo(f"gateway          {gateway.url}  (API {gateway.url}/api/v1)")
        click.echo(f"web UI           {gateway.url}/ui")
        click.echo(f"runner           pool 'default', limit {runner_settings.limit}, "
                   f"{runner_settings.isolation} isolation")
        click.echo(f"metrics          gateway {gateway.url}/metrics")
        click.echo(f"                 orchestrator {orch_metrics}")
        click.echo(f"                 runner {runner_metrics}")
        if deployed:
            click.echo(f"deployed         {', '.join(deployed)} (from {project})")
        click.secho("WARNING: the gateway's API-key auth is OFF in flowbus dev: anyone who can "
                    "reach it can send events and change deployments. Do not expose it.",
                    fg="red", bold=True, err=True)
        if server.url != DEFAULT_NATS_URL:
            click.echo(f"The flowbus CLI in another shell finds this NATS by itself (through "
                       f"{dev_url_file()}); for other tools and the SDK:")
            click.echo(f"  export FLOWBUS_NATS_URL={server.url}")
        click.echo("flowbus dev is ready. Send an event from another shell:")
        click.echo(f"  curl -X POST {gateway.url}/events -H 'content-type: application/cloudevents+json' "
                   "-d '{\"specversion\": \"1.0\", \"id\": \"1\", \"source\": \"/me\", "
                   "\"type\": \"com.example.hello\", \"data\": {\"name\": \"you\"}}'")
        click.echo("Press Ctrl-C to stop (twice: at once).")
        await stop.wait()
        click.echo("stopping... (Ctrl-C again to stop at once)")
