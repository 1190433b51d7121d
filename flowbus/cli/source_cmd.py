"""``flowbus source``: manage event sources (queue messages that become events)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from flowbus.cli._common import nats_settings, print_table, run_async

_NAME = click.argument("name", metavar="NAME")


@click.group()
def source() -> None:
    """Create, list, inspect, pause, resume and delete event sources."""


def _check_name(name: str) -> str:
    import re

    from events.sources import SOURCE_NAME_PATTERN

    if re.fullmatch(SOURCE_NAME_PATTERN, name) is None:
        raise click.BadParameter(f"{name[:100]!r} is not a source name (lowercase letters, "
                                 "digits and '-', at most 63)", param_hint="NAME")
    return name


def _echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, default=str))


@source.command()
@click.option("-f", "--file", "path", required=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="definition file (YAML or JSON)")
@click.option("--replace", is_flag=True, help="replace the source if it exists")
@run_async
async def create(path: Path, replace: bool) -> None:
    """Create a source from a definition file."""
    from flowbus.sources import DefinitionError, create_source, load_definition

    try:
        spec = load_definition(path)
    except DefinitionError as exc:
        raise click.BadParameter(str(exc), param_hint="--file") from None
    created = await create_source(spec, replace=replace, settings=nats_settings())
    click.echo(f"source {created.name} {'stored' if replace else 'created'} ({created.kind})")


@source.command(name="ls")
@run_async
async def list_command() -> None:
    """List sources with their state."""
    from events.bus import Bus
    from events.source_store import SourceStore

    async with await Bus.connect(nats_settings()) as bus:
        store = await SourceStore.open(bus)
        rows = []
        for s in await store.all():
            status = await store.status(s.name)
            state = "paused" if s.paused else (status.state if status else "not running")
            reason = status.reason if status and status.reason and not s.paused else ""
            rows.append([s.name, s.kind, state, reason or "-"])
    print_table(["name", "kind", "state", "reason"], rows, empty="no sources")


@source.command()
@_NAME
@run_async
async def inspect(name: str) -> None:
    """Show a source's definition and status as JSON (secrets appear only as references)."""
    from flowbus.sources import get_source, source_status

    settings = nats_settings()
    found = await get_source(_check_name(name), settings=settings)
    status = await source_status(name, settings=settings)
    _echo_json({**found.model_dump(mode="json"),
                "status": None if status is None else status.model_dump(mode="json")})


@source.command()
@_NAME
@run_async
async def pause(name: str) -> None:
    """Stop consuming; resume continues where it was (where the broker keeps messages)."""
    from flowbus.sources import pause_source

    await pause_source(_check_name(name), settings=nats_settings())
    click.echo(f"source {name} paused")


@source.command()
@_NAME
@run_async
async def resume(name: str) -> None:
    """Resume a paused source."""
    from flowbus.sources import resume_source

    await resume_source(_check_name(name), settings=nats_settings())
    click.echo(f"source {name} resumed")


@source.command()
@_NAME
@run_async
async def delete(name: str) -> None:
    """Delete a source, its status and its dead letters."""
    from flowbus.sources import delete_source

    await delete_source(_check_name(name), settings=nats_settings())
    click.echo(f"source {name} deleted")


@source.command()
@_NAME
@click.argument("action", required=False, type=click.Choice(["redrive", "purge"]))
@click.option("--key", "keys", multiple=True, help="only this dead letter (repeatable)")
@run_async
async def failures(name: str, action: str | None, keys: tuple[str, ...]) -> None:
    """List a source's dead letters; `redrive` maps them again, `purge` drops them."""
    from flowbus.sources import dead_letters, purge_dead_letters, redrive_dead_letters

    settings = nats_settings()
    _check_name(name)
    selected = list(keys) or None
    if action == "redrive":
        report = await redrive_dead_letters(name, selected, settings=settings)
        click.echo(f"redriven {report.redriven}, failed again {report.failed}")
        return
    if action == "purge":
        purged = await purge_dead_letters(name, selected, settings=settings)
        click.echo(f"purged {purged}")
        return
    letters = await dead_letters(name, settings=settings)
    if not letters:
        click.echo("no dead letters")
    for letter in letters:
        click.echo(f"{letter.key}  {letter.failed.isoformat()}  x{letter.attempts}  "
                   f"{letter.topic}: {letter.reason}")
