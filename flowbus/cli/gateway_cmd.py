"""``flowbus gateway``: the HTTP edge (CloudEvents, webhooks, REST API) as its own process."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import click

from events.messages import plain
from flowbus.cli._common import LOG_LEVEL, configure_service_logging, fail, nats_settings


def gateway_settings(**overrides: Any) -> Any:
    """The gateway's settings from ``FLOWBUS_GATEWAY_*`` and the flags; a bad one is an error."""
    from pydantic import ValidationError

    from gateway.settings import GatewaySettings

    try:
        return GatewaySettings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        fail(f"setting FLOWBUS_GATEWAY_{str(first['loc'][0]).upper()}: {plain(first)}", 2)
    raise AssertionError("unreachable")


@click.command()
@click.option("--host", default=None, help="interface to listen on [default: 127.0.0.1]")
@click.option("--port", type=click.IntRange(0, 65535), default=None,
              help="TCP port (0: any free port) [default: 8080]")
@click.option("--workers", type=click.IntRange(1, 64), default=None,
              help="processes sharing the port, one core each [default: 1]")
@LOG_LEVEL
def gateway(host: str | None, port: int | None, workers: int | None,
            log_level: str | None) -> None:
    """Serve CloudEvents ingest, webhooks and the REST API over HTTP."""
    from events.errors import FlowbusError
    from gateway.service import serve
    from gateway.workers import serve_workers

    configure_service_logging(log_level)
    settings = nats_settings()
    gw_settings = gateway_settings(host=host, port=port, workers=workers)
    if not gw_settings.auth:
        click.secho("WARNING: API-key auth is OFF (FLOWBUS_GATEWAY_AUTH=false): anyone who can "
                    "reach this port can send events and change deployments.",
                    fg="red", bold=True, err=True)

    def announce(url: str) -> None:
        click.echo(f"gateway listening on {url}")

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if gw_settings.workers > 1:
            return await serve_workers(settings, gw_settings, gw_settings.workers, stop=stop,
                                       announce=announce)
        await serve(settings, gw_settings, stop=stop, announce=announce)
        return 0

    try:
        code = asyncio.run(main())
    except FlowbusError as exc:
        fail(str(exc))
    if code:
        fail(f"a gateway worker exited with code {code}", code)
    click.echo("gateway stopped.")
