"""``flowbus dev``: the whole system on one machine.

An embedded nats-server with JetStream in a local data directory, the layout, and
the services (gateway, orchestrator, one runner) as they are built; Ctrl-C stops
them all, services first, NATS last.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import click

from flowbus.cli._common import configure_service_logging, fail, nats_settings


def _default_data_dir() -> Path:
    home = os.environ.get("FLOWBUS_HOME") or str(Path.home() / ".flowbus")
    return Path(home) / "dev"


@click.command()
@click.option("--nats-port", type=click.IntRange(0, 65535), default=4222, show_default=True,
              help="port of the embedded NATS (0: any free port)")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="where NATS keeps its data (default: $FLOWBUS_HOME/dev)")
@click.option("--gateway-port", type=click.IntRange(0, 65535), default=8080, show_default=True,
              help="port of the HTTP gateway (0: any free port)")
def dev(nats_port: int, data_dir: Path | None, gateway_port: int) -> None:
    """Run flowbus locally: embedded NATS with JetStream plus the flowbus services."""
    from events.embedded import EmbeddedNats, NatsServerError
    from events.errors import FlowbusError

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
        asyncio.run(_serve(settings, server, data_dir, gateway_port))
    except FlowbusError as exc:
        fail(str(exc))
    finally:
        server.close()
        click.echo("flowbus dev stopped.")


async def _serve(settings: object, server: object, data_dir: Path, gateway_port: int = 8080) -> None:
    from events.bus import Bus
    from events.embedded import EmbeddedNats
    from events.settings import NatsSettings
    from flowbus.cli.gateway_cmd import gateway_settings
    from gateway.context import GATEWAY
    from gateway.service import running
    from gateway.sources.manager import run_sources
    from gateway.sources.settings import SourcesSettings

    assert isinstance(settings, NatsSettings) and isinstance(server, EmbeddedNats)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    from orchestrator.service import Orchestrator
    from orchestrator.settings import OrchestratorSettings

    # Auth is off in dev, so a new user can curl at once; said loudly, below.
    gw_settings = gateway_settings(port=gateway_port, auth=False)
    async with await Bus.connect(settings) as bus, running(bus, gw_settings) as gateway:
        orchestrator_stop = asyncio.Event()
        orchestrator = asyncio.create_task(
            Orchestrator(bus, OrchestratorSettings()).run(orchestrator_stop)
        )
        sources_stop = asyncio.Event()
        sources = asyncio.create_task(run_sources(
            bus, SourcesSettings(), sources_stop, registry=gateway.app[GATEWAY].metrics.registry))
        click.echo(f"NATS JetStream   {server.url}  (data in {data_dir})")
        click.echo(f"namespace        {bus.layout.namespace}")
        click.echo(f"gateway          {gateway.url}  (API {gateway.url}/api/v1)")
        click.secho("WARNING: the gateway's API-key auth is OFF in flowbus dev: anyone who can "
                    "reach it can send events and change deployments. Do not expose it.",
                    fg="red", bold=True, err=True)
        click.echo("flowbus dev is ready. Send an event from another shell:")
        click.echo(f"  FLOWBUS_NATS_URL={server.url} flowbus events emit com.example.hello "
                   "--data '{\"name\": \"world\"}'")
        click.echo(f"  curl -X POST {gateway.url}/events -H 'ce-specversion: 1.0' -H 'ce-id: 1' "
                   "-H 'ce-source: /me' -H 'ce-type: com.example.hello' "
                   "-H 'content-type: application/json' -d '{\"name\": \"world\"}'")
        click.echo("Press Ctrl-C to stop.")
        await asyncio.wait({asyncio.ensure_future(stop.wait()), orchestrator},
                           return_when=asyncio.FIRST_COMPLETED)
        click.echo("stopping...")
        sources_stop.set()
        orchestrator_stop.set()
        await sources
        await orchestrator
