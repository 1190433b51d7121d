"""``flowbus nats status``: streams, consumers and what is pending."""

from __future__ import annotations

import click

from flowbus.cli._common import nats_settings, run_async


@click.group()
def nats() -> None:
    """Inspect the NATS JetStream layout flowbus uses."""


@nats.command()
@run_async
async def status() -> None:
    """Show every flowbus stream, its size, and its consumers' pending counts."""
    from rich.console import Console
    from rich.table import Table

    from events.bus import Bus

    settings = nats_settings()
    async with await Bus.connect(settings, ensure=False) as bus:
        streams = await bus.streams()
        table = Table(title=f"JetStream (namespace {settings.namespace})")
        for column in ("stream", "messages", "bytes", "consumer", "pending", "ack pending",
                       "redelivered"):
            table.add_column(column, justify="left" if column in ("stream", "consumer") else "right")
        for info in sorted(streams, key=lambda i: i.config.name or ""):
            name = info.config.name or "?"
            table.add_row(name, str(info.state.messages), str(info.state.bytes), "", "", "", "")
            for consumer in await bus.consumers(name):
                table.add_row("", "", "", consumer.name or "?", str(consumer.num_pending),
                              str(consumer.num_ack_pending), str(consumer.num_redelivered))
        if not streams:
            click.echo(f"no flowbus streams in namespace {settings.namespace!r}; "
                       "start `flowbus dev` or any flowbus service to create them")
            return
        console = Console()
        # Piped output keeps whole names instead of wrapping to 80 columns.
        Console(width=max(console.width, 160) if not console.is_terminal else None).print(table)
