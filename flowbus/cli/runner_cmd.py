"""``flowbus runner``: take flow-run jobs of a work pool and execute them."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import click

from events.messages import plain
from flowbus.cli._common import LOG_LEVEL, default_log_level, fail, nats_settings


def runner_settings(**overrides: Any) -> Any:
    """Runner settings from the environment and the flags; a bad value exits with code 2."""
    from pydantic import ValidationError

    from runners.settings import RunnerSettings

    try:
        return RunnerSettings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        if first["loc"]:
            name = str(first["loc"][0])
            where = f"FLOWBUS_RUNNER_{name.upper()} (--{name.replace('_', '-')})"
        else:
            where = "of the runner"
        fail(f"setting {where}: {plain(first)}", 2)
    raise AssertionError("unreachable")


@click.command()
@click.option("--pool", default=None, help="work pool to serve  [default: default]")
@click.option("--limit", type=int, default=None, help="flow runs at once  [default: 4]")
@click.option("--isolation", type=click.Choice(["process", "inline"]), default=None,
              help="warm worker processes, or the runner's own process  [default: process]")
@click.option("--metrics-port", type=int, default=None, help="serve /metrics on this port")
@LOG_LEVEL
def runner(pool: str | None, limit: int | None, isolation: str | None,
           metrics_port: int | None, log_level: str | None) -> None:
    """Execute the flow runs of a work pool until SIGTERM or Ctrl-C (then drain)."""
    import runners.settings  # noqa: F401  (registers FLOWBUS_RUNNER_* before the check)

    nats = nats_settings()
    settings = runner_settings(pool=pool, limit=limit, isolation=isolation,
                               metrics_port=metrics_port)
    from events.errors import FlowbusError

    try:
        asyncio.run(_serve(nats, settings, (log_level or default_log_level()).upper()))
    except FlowbusError as exc:
        fail(str(exc))


def _log_to_stderr(level: str) -> None:
    import logging

    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s | %(levelname)-7s | %(name)s - %(message)s"))
    logger = logging.getLogger("flowbus.runner")
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


async def _serve(nats: Any, settings: Any, log_level: str) -> None:
    from runners.service import serve

    _log_to_stderr(log_level)
    stop, ready = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    async def announce() -> None:
        await ready.wait()
        click.echo(f"runner {settings.runner_id} ready: pool {settings.pool!r}, "
                   f"limit {settings.limit}, {settings.isolation} isolation", err=True)

    announcing = asyncio.create_task(announce())
    try:
        await serve(nats, settings, ready=ready, stop=stop)
    finally:
        announcing.cancel()
