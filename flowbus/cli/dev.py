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

from flowbus.cli._common import fail, nats_settings


def _default_data_dir() -> Path:
    home = os.environ.get("FLOWBUS_HOME") or str(Path.home() / ".flowbus")
    return Path(home) / "dev"


@click.command()
@click.option("--nats-port", type=click.IntRange(0, 65535), default=4222, show_default=True,
              help="port of the embedded NATS (0: any free port)")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="where NATS keeps its data (default: $FLOWBUS_HOME/dev)")
def dev(nats_port: int, data_dir: Path | None) -> None:
    """Run flowbus locally: embedded NATS with JetStream plus the flowbus services."""
    from events.embedded import EmbeddedNats, NatsServerError
    from flowbus.cli.runner_cmd import runner_settings

    runner = runner_settings(pool="default")  # FLOWBUS_RUNNER_* apply; the pool is 'default'
    data_dir = data_dir or _default_data_dir()
    server = EmbeddedNats(data_dir, port=nats_port)
    try:
        server.start()
    except NatsServerError as exc:
        hint = " (is another nats-server or `flowbus dev` running? try --nats-port 0)"
        fail(f"{exc}{hint if nats_port else ''}")
    try:
        os.environ["FLOWBUS_NATS_URL"] = server.url
        settings = nats_settings(nats_url=[server.url])
        asyncio.run(_serve(settings, server, data_dir, runner))
    finally:
        server.close()
        click.echo("flowbus dev stopped.")


async def _serve(settings: object, server: object, data_dir: Path, runner_settings: object) -> None:
    from events.bus import Bus
    from events.embedded import EmbeddedNats
    from events.settings import NatsSettings
    from runners.service import Runner, make_executor
    from runners.settings import RunnerSettings

    assert isinstance(settings, NatsSettings) and isinstance(server, EmbeddedNats)
    assert isinstance(runner_settings, RunnerSettings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with await Bus.connect(settings) as bus:
        # One runner for the 'default' pool, started once the bus is up, stopped before it closes.
        runner = Runner(bus, runner_settings, make_executor(settings, runner_settings))
        runner_stop, runner_ready = asyncio.Event(), asyncio.Event()
        runner_task = asyncio.create_task(runner.run(runner_stop, runner_ready))
        await asyncio.wait({runner_task, asyncio.create_task(runner_ready.wait())},
                           return_when=asyncio.FIRST_COMPLETED)
        if runner_task.done():
            runner_task.result()
        click.echo(f"NATS JetStream   {server.url}  (data in {data_dir})")
        click.echo(f"namespace        {bus.layout.namespace}")
        click.echo(f"runner           pool 'default', limit {runner_settings.limit}, "
                   f"{runner_settings.isolation} isolation")
        click.echo("flowbus dev is ready. Send an event from another shell:")
        click.echo(f"  FLOWBUS_NATS_URL={server.url} flowbus events emit com.example.hello "
                   "--data '{\"name\": \"world\"}'")
        click.echo("Press Ctrl-C to stop.")
        await stop.wait()
        click.echo("stopping...")
        runner_stop.set()
        await runner_task
