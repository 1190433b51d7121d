"""``flowbus automation``: create, list, inspect, pause, resume, delete; channels; failures."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from flowbus.cli._common import nats_settings, print_table, run_async

MAX_FILE_BYTES = 1024 * 1024


def _read_definition(path: str) -> Any:
    """A YAML or JSON file (``-`` for standard input) as data; BadParameter saying why not."""
    import yaml

    try:
        if path == "-":
            text = sys.stdin.read(MAX_FILE_BYTES + 1)
        else:
            file = Path(path)
            if file.stat().st_size > MAX_FILE_BYTES:
                raise click.BadParameter(f"{path!r} is over {MAX_FILE_BYTES} bytes", param_hint="-f")
            text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise click.BadParameter(f"cannot read {path!r}: {exc.strerror}", param_hint="-f") from None
    except UnicodeDecodeError:
        raise click.BadParameter(f"{path!r} is not UTF-8 text", param_hint="-f") from None
    if len(text) > MAX_FILE_BYTES:
        raise click.BadParameter(f"input is over {MAX_FILE_BYTES} bytes", param_hint="-f")
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise click.BadParameter(f"{path!r} is not valid YAML or JSON: {str(exc).splitlines()[0]}",
                                 param_hint="-f") from None


def _dump(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


@click.group()
def automation() -> None:
    """Automations: when a trigger fires, run actions."""


@automation.command()
@click.option("-f", "--file", "path", required=True, help="definition as YAML or JSON (- for stdin)")
@run_async
async def create(path: str) -> None:
    """Create an automation (or several: a list in the file) from a definition file."""
    from events import automation_store as store
    from events.automations import parse_automation
    from events.bus import Bus

    data = _read_definition(path)
    definitions = data if isinstance(data, list) else [data]
    for definition in definitions:  # all are checked before any is stored
        parse_automation(definition)
    async with await Bus.connect(nats_settings()) as bus:
        for definition in definitions:
            made = await store.create_automation(bus, definition)
            click.echo(f"created automation {made.name!r} ({made.id})")


@automation.command("ls")
@click.option("--json", "as_json", is_flag=True, help="print the definitions as JSON")
@run_async
async def list_command(as_json: bool) -> None:
    """List automations."""
    from events import automation_store as store
    from events.bus import Bus

    async with await Bus.connect(nats_settings()) as bus:
        automations = await store.list_automations(bus)
    if as_json:
        _dump([a.model_dump(mode="json") for a in automations])
        return
    print_table(["id", "name", "state", "actions"],
                [[a.id, a.name, "enabled" if a.enabled else "paused",
                  ", ".join(x.type for x in a.firing_actions())] for a in automations],
                empty="no automations")


@automation.command()
@click.argument("automation_id", metavar="ID_OR_NAME")
@run_async
async def inspect(automation_id: str) -> None:
    """Show an automation's definition as JSON."""
    from events import automation_store as store
    from events.bus import Bus

    async with await Bus.connect(nats_settings()) as bus:
        found = await store.find_automation(bus, automation_id)
    _dump(found.model_dump(mode="json"))


async def _set_enabled(automation_id: str, enabled: bool) -> None:
    from events import automation_store as store
    from events.bus import Bus

    async with await Bus.connect(nats_settings()) as bus:
        found = await store.find_automation(bus, automation_id)
        await store.set_enabled(bus, found.id, enabled)
    click.echo(f"{'resumed' if enabled else 'paused'} automation {found.name!r} ({found.id})")


@automation.command()
@click.argument("automation_id", metavar="ID_OR_NAME")
@run_async
async def pause(automation_id: str) -> None:
    """Stop an automation firing."""
    await _set_enabled(automation_id, False)


@automation.command()
@click.argument("automation_id", metavar="ID_OR_NAME")
@run_async
async def resume(automation_id: str) -> None:
    """Let a paused automation fire again."""
    await _set_enabled(automation_id, True)


@automation.command()
@click.argument("automation_id", metavar="ID_OR_NAME")
@run_async
async def delete(automation_id: str) -> None:
    """Delete an automation."""
    from events import automation_store as store
    from events.bus import Bus

    async with await Bus.connect(nats_settings()) as bus:
        found = await store.find_automation(bus, automation_id)
        await store.delete_automation(bus, found.id)
    click.echo(f"deleted automation {found.name!r} ({found.id})")


@automation.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="print the dead letters as JSON")
@click.pass_context
def failures(ctx: click.Context, as_json: bool) -> None:
    """Actions that kept failing (the dead-letter list); redrive or purge them."""
    if ctx.invoked_subcommand is None:
        _list_failures(as_json)


@run_async
async def _list_failures(as_json: bool) -> None:
    from events import automation_store as store
    from events.bus import Bus

    async with await Bus.connect(nats_settings()) as bus:
        letters = await store.list_dead_letters(bus)
    if as_json:
        _dump([d.model_dump(mode="json") for d in letters])
        return
    if not letters:
        click.echo("no failed actions")
    for d in letters:
        click.echo(f"{d.key}  {d.failed_at.isoformat(timespec='seconds')}  {d.automation_name}  "
                   f"action {d.action_index} ({d.action.get('type')}): {d.reason}")


@failures.command()
@click.argument("keys", nargs=-1)
@click.option("--all", "every", is_flag=True, help="every dead letter")
@run_async
async def redrive(keys: tuple[str, ...], every: bool) -> None:
    """Run dead-lettered actions again (by KEY, or --all)."""
    from events import automation_store as store
    from events.bus import Bus

    if not keys and not every:
        raise click.UsageError("name the dead letters to redrive (KEY...) or pass --all")
    async with await Bus.connect(nats_settings()) as bus:
        wanted = [d.key for d in await store.list_dead_letters(bus)] if every else list(keys)
        for key in wanted:
            await store.request_redrive(bus, key, source="flowbus/cli")
            click.echo(f"redrive requested for {key}")


@failures.command()
@click.argument("keys", nargs=-1)
@click.option("--all", "every", is_flag=True, help="every dead letter")
@run_async
async def purge(keys: tuple[str, ...], every: bool) -> None:
    """Delete dead letters (by KEY, or --all) without running them."""
    from events import automation_store as store
    from events.bus import Bus

    if not keys and not every:
        raise click.UsageError("name the dead letters to purge (KEY...) or pass --all")
    async with await Bus.connect(nats_settings()) as bus:
        count = await store.purge_dead_letters(bus, None if every else list(keys))
    click.echo(f"purged {count} dead letter(s)")


@automation.group()
def channel() -> None:
    """Notification channels (webhook, slack, teams, email) that actions name."""


@channel.command("set")
@click.option("-f", "--file", "path", required=True, help="channel definition as YAML or JSON")
@run_async
async def set_channel(path: str) -> None:
    """Create or replace a channel."""
    from events import automation_store as store
    from events.bus import Bus
    from events.notification_channels import parse_channel

    definition = _read_definition(path)
    parse_channel(definition)
    async with await Bus.connect(nats_settings()) as bus:
        saved = await store.save_channel(bus, definition)
    click.echo(f"saved channel {saved.name!r} ({saved.config.kind})")


@channel.command("ls")
@run_async
async def list_channels() -> None:
    """List channels (without their secrets: a Slack or Teams URL shows its host only)."""
    from events import automation_store as store
    from events.bus import Bus
    from events.notification_channels import channel_target
    from events.sealed import box_or_none

    async with await Bus.connect(nats_settings()) as bus:
        channels = await store.list_channels(bus)
    box = box_or_none()
    print_table(["name", "kind", "target"],
                [[c.name, c.config.kind, channel_target(c, box)] for c in channels],
                empty="no channels")
