"""``flowbus dev``: the whole system on one machine.

An embedded nats-server with JetStream in a local data directory, then the
gateway, the orchestrator and one runner on that bus; ``--project DIR`` deploys the
``flowbus.yaml`` found there. Ctrl-C stops the services first, NATS last.
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

from flowbus.cli._common import configure_service_logging, fail, nats_settings


def _default_data_dir() -> Path:
    home = os.environ.get("FLOWBUS_HOME") or str(Path.home() / ".flowbus")
    return Path(home) / "dev"


@click.command()
@click.option("--nats-port", type=click.IntRange(0, 65535), default=4222, show_default=True,
              help="port of the embedded NATS (0: any free port)")
@click.option("--gateway-port", type=click.IntRange(0, 65535), default=8080, show_default=True,
              help="port of the HTTP gateway (0: any free port)")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="where NATS keeps its data (default: $FLOWBUS_HOME/dev)")
@click.option("--project", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=None, help="deploy the flowbus.yaml of this directory at start")
def dev(nats_port: int, gateway_port: int, data_dir: Path | None, project: Path | None) -> None:
    """Run flowbus locally: embedded NATS with JetStream plus the flowbus services."""
    from events.embedded import EmbeddedNats, NatsServerError
    from events.errors import FlowbusError
    from flowbus.cli.runner_cmd import runner_settings

    runner = runner_settings(pool="default")  # FLOWBUS_RUNNER_* apply; the pool is 'default'
    data_dir = data_dir or _default_data_dir()
    configure_service_logging()
    server = EmbeddedNats(data_dir, port=nats_port)
    try:
        server.start()
    except NatsServerError as exc:
        hint = " (is another nats-server or `flowbus dev` running? try --nats-port 0)"
        fail(f"{exc}{hint if nats_port else ''}")
    try:
        os.environ["FLOWBUS_NATS_URL"] = server.url
        settings = nats_settings(nats_url=[server.url])
        asyncio.run(_serve(settings, server, data_dir, gateway_port, project, runner))
    except FlowbusError as exc:
        fail(str(exc))
    finally:
        server.close()
        click.echo("flowbus dev stopped.")


@contextlib.asynccontextmanager
async def _orchestrator(bus: Any) -> AsyncIterator[None]:
    from orchestrator.service import Orchestrator
    from orchestrator.settings import OrchestratorSettings

    settings = OrchestratorSettings()
    orchestrator = Orchestrator(bus, settings)
    metrics_server = None
    if settings.metrics_port is not None:  # FLOWBUS_ORCHESTRATOR_METRICS_PORT
        from prometheus_client import start_http_server

        metrics_server, _ = start_http_server(settings.metrics_port, settings.metrics_host,
                                              registry=orchestrator.metrics.registry)
    stop = asyncio.Event()
    task = asyncio.create_task(orchestrator.run(stop))
    try:
        yield
    finally:
        stop.set()
        await task
        if metrics_server is not None:
            metrics_server.shutdown()


@contextlib.asynccontextmanager
async def _runner(bus: Any, settings: Any, runner_settings: Any) -> AsyncIterator[None]:
    from runners.service import Runner, make_executor

    runner = Runner(bus, runner_settings, make_executor(settings, runner_settings))
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(runner.run(stop, ready))
    await asyncio.wait({task, asyncio.create_task(ready.wait())}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()  # it failed to start: say why
    try:
        yield
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


async def _serve(settings: Any, server: Any, data_dir: Path, gateway_port: int,
                 project: Path | None, runner_settings: Any) -> None:
    from events.bus import Bus
    from flowbus.cli.gateway_cmd import gateway_settings
    from gateway.context import GATEWAY
    from gateway.service import running

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # Auth is off in dev, so a new user can curl at once; said loudly, below.
    gw_settings = gateway_settings(port=gateway_port, auth=False)
    async with contextlib.AsyncExitStack() as services:
        bus = await services.enter_async_context(await Bus.connect(settings))
        await services.enter_async_context(_runner(bus, settings, runner_settings))
        await services.enter_async_context(_orchestrator(bus))
        gateway = await services.enter_async_context(running(bus, gw_settings))
        await services.enter_async_context(
            _sources(bus, gateway.app[GATEWAY].metrics.registry))
        deployed = await _deploy(bus, project) if project else []
        click.echo(f"NATS JetStream   {server.url}  (data in {data_dir})")
        click.echo(f"namespace        {bus.layout.namespace}")
        click.echo(f"gateway          {gateway.url}  (API {gateway.url}/api/v1)")
        click.echo(f"web UI           {gateway.url}/ui")
        click.echo(f"runner           pool 'default', limit {runner_settings.limit}, "
                   f"{runner_settings.isolation} isolation")
        if deployed:
            click.echo(f"deployed         {', '.join(deployed)} (from {project})")
        click.secho("WARNING: the gateway's API-key auth is OFF in flowbus dev: anyone who can "
                    "reach it can send events and change deployments. Do not expose it.",
                    fg="red", bold=True, err=True)
        click.echo("flowbus dev is ready. Send an event from another shell:")
        click.echo(f"  curl -X POST {gateway.url}/events -H 'content-type: application/cloudevents+json' "
                   "-d '{\"specversion\": \"1.0\", \"id\": \"1\", \"source\": \"/me\", "
                   "\"type\": \"com.example.hello\", \"data\": {\"name\": \"you\"}}'")
        click.echo("Press Ctrl-C to stop.")
        await stop.wait()
        click.echo("stopping...")
