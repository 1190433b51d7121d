"""``flowbus orchestrator``: trigger matching, flow-run creation, schedules, concurrency."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

import click

from events.messages import plain
from flowbus.cli._common import LOG_LEVEL, default_log_level, fail, nats_settings


def orchestrator_settings(**overrides: Any) -> Any:
    """The orchestrator's settings from the environment, errors as one line."""
    from pydantic import ValidationError

    from orchestrator.settings import OrchestratorSettings

    try:
        return OrchestratorSettings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        fail(f"setting FLOWBUS_ORCHESTRATOR_{str(first['loc'][0]).upper()}: {plain(first)}", 2)
    raise AssertionError("unreachable")


@click.command("orchestrator")
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=None,
              help="serve Prometheus /metrics on this port")
@LOG_LEVEL
def orchestrator_command(metrics_port: int | None, log_level: str | None) -> None:
    """Run the orchestrator (active/standby: start two for failover)."""
    import orchestrator.automations.settings  # registers FLOWBUS_AUTOMATIONS_* for the env check
    import orchestrator.settings  # noqa: F401  (registers FLOWBUS_ORCHESTRATOR_* for the env check)

    logging.basicConfig(level=(log_level or default_log_level()).upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = nats_settings()
    orch_settings = orchestrator_settings(metrics_port=metrics_port)
    asyncio.run(_run(settings, orch_settings))


async def _run(settings: Any, orch_settings: Any) -> None:
    from events.errors import FlowbusError
    from orchestrator.service import serve

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    ready = asyncio.Event()

    async def announce() -> None:
        await ready.wait()
        click.echo("orchestrator ready", err=True)

    try:
        async with asyncio.TaskGroup() as tg:
            announcer = tg.create_task(announce())
            await serve(settings, orch_settings, ready=ready, stop=stop)
            announcer.cancel()
    except* FlowbusError as group:
        first: BaseException = group
        while isinstance(first, BaseExceptionGroup):  # serve's own task group nests one
            first = first.exceptions[0]
        fail(str(first))
