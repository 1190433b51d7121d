"""``flowbus artifact``, ``flowbus concurrency-limit`` and ``flowbus block``: run-time state."""

from __future__ import annotations

import json
import re
from typing import Any

import click

from flowbus.cli._common import fail, nats_settings, run_async

_LIMIT_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _dump(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


# --- artifacts ----------------------------------------------------------------------


@click.group()
def artifact() -> None:
    """Artifacts created by runs (markdown, tables, links, progress, images)."""


@artifact.command("ls")
@click.option("--key", default=None, help="only artifacts with this key")
@click.option("--flow-run", "flow_run_id", default=None, help="only artifacts of this flow run")
@click.option("--type", "type_", default=None, help="only artifacts of this type")
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, help="at most this many")
@click.option("--json", "as_json", is_flag=True, help="print the records as JSON")
@run_async
async def artifact_ls(key: str | None, flow_run_id: str | None, type_: str | None, limit: int,
                      as_json: bool) -> None:
    """List artifacts, newest first."""
    from events.artifacts import list_artifacts, valid_key
    from events.bus import Bus

    if key is not None and not valid_key(key):
        fail(f"--key {key[:100]!r} is not an artifact key (lowercase letters, digits, dashes)", 2)
    async with await Bus.connect(nats_settings()) as bus:
        kv = await bus.kv(bus.layout.artifacts)
        records = (await list_artifacts(kv, key=key, flow_run_id=flow_run_id, type=type_))[:limit]
    if as_json:
        _dump([r.model_dump(mode="json") for r in records])
        return
    for r in records:
        click.echo(f"{r.id}  {r.type:<9} {r.key or '-':<24} {r.created.isoformat()}  "
                   f"flow run {r.flow_run_id or '-'}")


@artifact.command("inspect")
@click.argument("key")
@click.option("--history", is_flag=True, help="every version of the key, newest first")
@run_async
async def artifact_inspect(key: str, history: bool) -> None:
    """Show the latest artifact with KEY (or every version) as JSON."""
    from events.artifacts import latest_artifact, list_artifacts, valid_key
    from events.bus import Bus

    if not valid_key(key):
        fail(f"{key[:100]!r} is not an artifact key (lowercase letters, digits, dashes)", 2)
    async with await Bus.connect(nats_settings()) as bus:
        kv = await bus.kv(bus.layout.artifacts)
        if history:
            records = await list_artifacts(kv, key=key)
            if not records:
                fail(f"no artifact with key {key!r}")
            _dump([r.model_dump(mode="json") for r in records])
            return
        record = await latest_artifact(kv, key)
    if record is None:
        fail(f"no artifact with key {key!r}")
        return
    _dump(record.model_dump(mode="json"))


# --- concurrency limits -----------------------------------------------------------------


@click.group("concurrency-limit")
def concurrency_limit() -> None:
    """Global concurrency and rate limits, and task tag limits."""


def _limit_name(name: str, tag: bool) -> str:
    from events.concurrency import task_tag_limit

    if not _LIMIT_NAME.match(name):
        fail(f"limit name {name[:100]!r} is invalid: use 1-64 letters, digits, '_' or '-'", 2)
    return task_tag_limit(name) if tag else name


def _info_dict(info: Any) -> dict[str, Any]:
    return {"name": info.name, "limit": info.limit,
            "slot_decay_per_second": info.slot_decay_per_second,
            "active_slots": info.active_slots, "waiters": info.waiters}


@concurrency_limit.command("create")
@click.argument("name")
@click.option("--limit", type=click.IntRange(0, 10_000), required=True, help="slots")
@click.option("--slot-decay-per-second", type=click.FloatRange(0, 1000, min_open=True),
              default=None, help="slots freed per second (makes it usable by rate_limit)")
@click.option("--tag", is_flag=True, help="NAME is a task tag: limit task runs carrying it")
@run_async
async def limit_create(name: str, limit: int, slot_decay_per_second: float | None, tag: bool) -> None:
    """Create (or change) the limit NAME."""
    from events import concurrency
    from events.bus import Bus

    full = _limit_name(name, tag)
    async with await Bus.connect(nats_settings()) as bus:
        kv = await bus.kv(bus.layout.concurrency)
        await concurrency.set_limit(kv, full, limit, slot_decay_per_second=slot_decay_per_second)
    click.echo(f"concurrency limit {full!r}: {limit} slot(s)")


@concurrency_limit.command("ls")
@click.option("--json", "as_json", is_flag=True, help="print the limits as JSON")
@run_async
async def limit_ls(as_json: bool) -> None:
    """List limits with the slots in use and the waiters."""
    from events import concurrency
    from events.bus import Bus

    async with await Bus.connect(nats_settings()) as bus:
        infos = await concurrency.list_limits(await bus.kv(bus.layout.concurrency))
    if as_json:
        _dump([_info_dict(i) for i in infos])
        return
    for i in infos:
        decay = f"  decay {i.slot_decay_per_second}/s" if i.slot_decay_per_second else ""
        click.echo(f"{i.name}  {i.active_slots}/{i.limit} in use  {i.waiters} waiting{decay}")


@concurrency_limit.command("inspect")
@click.argument("name")
@click.option("--tag", is_flag=True, help="NAME is a task tag")
@run_async
async def limit_inspect(name: str, tag: bool) -> None:
    """Show the limit NAME as JSON."""
    from events import concurrency
    from events.bus import Bus

    full = _limit_name(name, tag)
    async with await Bus.connect(nats_settings()) as bus:
        info = await concurrency.limit_info(await bus.kv(bus.layout.concurrency), full)
    if info is None:
        fail(f"no concurrency limit named {full!r}")
        return
    _dump(_info_dict(info))


@concurrency_limit.command("delete")
@click.argument("name")
@click.option("--tag", is_flag=True, help="NAME is a task tag")
@run_async
async def limit_delete(name: str, tag: bool) -> None:
    """Delete the limit NAME."""
    from events import concurrency
    from events.bus import Bus

    full = _limit_name(name, tag)
    async with await Bus.connect(nats_settings()) as bus:
        deleted = await concurrency.delete_limit(await bus.kv(bus.layout.concurrency), full)
    if not deleted:
        fail(f"no concurrency limit named {full!r}")
    click.echo(f"deleted concurrency limit {full!r}")


# --- blocks ----------------------------------------------------------------------------


@click.group()
def block() -> None:
    """Saved blocks (secrets are never printed)."""


@block.command("ls")
@click.option("--type", "block_type", default=None, help="only blocks of this type slug")
@click.option("--json", "as_json", is_flag=True, help="print the blocks as JSON (secrets masked)")
@run_async
async def block_ls(block_type: str | None, as_json: bool) -> None:
    """List blocks."""
    from events.blocks import BlockDocument, public_view
    from events.bus import Bus

    async with await Bus.connect(nats_settings()) as bus:
        kv = await bus.kv(bus.layout.blocks)
        docs = []
        for key in await kv.keys():
            entry = await kv.get(key)
            if entry is not None:
                doc = BlockDocument.model_validate_json(entry.value)
                if block_type is None or doc.block_type == block_type:
                    docs.append(doc)
    docs.sort(key=lambda d: (d.block_type, d.name))
    if as_json:
        _dump([public_view(d) for d in docs])
        return
    for d in docs:
        click.echo(f"{d.block_type}/{d.name}  updated {d.updated.isoformat()}")


def _split(ref: str) -> tuple[str, str]:
    from events.blocks import NAME_PATTERN, valid_slug

    block_type, sep, name = ref.partition("/")
    if not sep or not valid_slug(block_type) or not re.fullmatch(NAME_PATTERN, name):
        fail(f"{ref[:100]!r} is not TYPE/NAME (lowercase letters, digits, dashes)", 2)
    return block_type, name


@block.command("inspect")
@click.argument("ref", metavar="TYPE/NAME")
@run_async
async def block_inspect(ref: str) -> None:
    """Show a block as JSON, its secret fields masked."""
    from events.blocks import BlockDocument, block_key, public_view
    from events.bus import Bus

    block_type, name = _split(ref)
    async with await Bus.connect(nats_settings()) as bus:
        entry = await (await bus.kv(bus.layout.blocks)).get(block_key(block_type, name))
    if entry is None:
        fail(f"no {block_type} block named {name!r}")
        return
    _dump(public_view(BlockDocument.model_validate_json(entry.value)))


@block.command("delete")
@click.argument("ref", metavar="TYPE/NAME")
@run_async
async def block_delete(ref: str) -> None:
    """Delete a block."""
    from events.blocks import block_key
    from events.bus import Bus

    block_type, name = _split(ref)
    async with await Bus.connect(nats_settings()) as bus:
        kv = await bus.kv(bus.layout.blocks)
        key = block_key(block_type, name)
        if await kv.get(key) is None:
            fail(f"no {block_type} block named {name!r}")
        await kv.delete(key)
    click.echo(f"deleted {block_type} block {name!r}")


@block.command("generate-key")
def block_generate_key() -> None:
    """Print a new FLOWBUS_SECRETS_KEY (the same key goes to every process)."""
    from events.secretbox import SecretBox

    click.echo(SecretBox.generate_key())
