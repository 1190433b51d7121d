"""``flowbus events emit`` and ``flowbus events tail``."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Any

import click

from flowbus.cli._common import nats_settings, parse_duration, run_async


@click.group()
def events() -> None:
    """Send events and watch them arrive."""


def _parse_data(text: str | None) -> Any:
    """JSON from the option, from a file (``@path``) or from standard input (``-``)."""
    if text is None:
        return None
    if text == "-":
        text = sys.stdin.read()
    elif text.startswith("@"):
        try:
            with open(text[1:], encoding="utf-8") as file:
                text = file.read()
        except OSError as exc:
            raise click.BadParameter(f"cannot read {text[1:]!r}: {exc.strerror}",
                                     param_hint="--data") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint="--data") from None


def _parse_extensions(pairs: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{pair!r} is not NAME=VALUE", param_hint="--ext")
        out[name] = value
    return out


@events.command()
@click.argument("event_type", metavar="TYPE")
@click.option("--source", default="flowbus/cli", show_default=True, help="CloudEvents source")
@click.option("--subject", default=None, help="the resource the event is about")
@click.option("--data", "data_text", default=None,
              help="payload as JSON; @FILE reads it from a file, - from standard input")
@click.option("--id", "event_id", default=None, help="event id (default: a new UUID)")
@click.option("--ext", "extensions", multiple=True, help="extension attribute NAME=VALUE")
@run_async
async def emit(event_type: str, source: str, subject: str | None, data_text: str | None,
               event_id: str | None, extensions: tuple[str, ...]) -> None:
    """Publish one CloudEvent of TYPE and wait until JetStream stored it."""
    from events.bus import Bus
    from events.cloudevent import CloudEvent
    from events.errors import InvalidEvent

    data = _parse_data(data_text)
    try:
        event = CloudEvent.create(
            event_type, source=source, subject=subject, data=data, id=event_id,
            extensions=_parse_extensions(extensions),
        )
    except InvalidEvent as exc:
        hint = {"type": "TYPE", "extensions": "--ext"}.get(exc.attribute, f"--{exc.attribute}")
        raise click.BadParameter(exc.reason, param_hint=hint) from None
    settings = nats_settings()
    async with await Bus.connect(settings) as bus:
        ack = await bus.publish(event)
    note = " (duplicate: already stored)" if ack.duplicate else ""
    click.echo(f"{event.id} stored as #{ack.seq} in {ack.stream}{note}")


@events.command()
@click.argument("pattern", default="*")
@click.option("--since", default=None, help="also show events from this long ago (10m, 2h)")
@click.option("--count", type=click.IntRange(min=1), default=None, help="stop after N events")
@click.option("--json", "as_json", is_flag=True, help="print each event as CloudEvents JSON")
@run_async
async def tail(pattern: str, since: str | None, count: int | None, as_json: bool) -> None:
    """Print events whose type matches PATTERN (`*` matches anything) as they arrive."""
    from events.bus import Bus
    from events.cloudevent import to_dict
    from events.errors import InvalidEvent
    from events.subjects import check_pattern

    try:
        check_pattern(pattern)
    except InvalidEvent as exc:
        raise click.BadParameter(exc.reason, param_hint="PATTERN") from None
    start = datetime.now(UTC) - parse_duration(since) if since else None
    settings = nats_settings()
    seen = 0
    async with await Bus.connect(settings) as bus:
        async for event in bus.tail(pattern, since=start):
            if as_json:
                click.echo(json.dumps(to_dict(event), default=str))
            else:
                when = event.time.isoformat(timespec="milliseconds") if event.time else "-"
                data = json.dumps(event.data, default=str) if event.data is not None else ""
                if len(data) > 200:
                    data = data[:197] + "..."
                click.echo(f"{when}  {event.type}  {event.resource}  {data}")
            seen += 1
            if count is not None and seen >= count:
                break
