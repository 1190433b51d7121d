"""``flowbus asset ls`` / ``inspect``: the asset catalog (``flowbus-assets``)."""

from __future__ import annotations

import json

import click

from flowbus.cli._common import fail, nats_settings, run_async


@click.group()
def asset() -> None:
    """Assets materialised by @materialize tasks, with their latest materialisation."""


@asset.command("ls")
@click.option("--prefix", default=None, help="only assets whose key starts with this")
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, help="at most this many")
@click.option("--json", "as_json", is_flag=True, help="print the records as JSON")
@run_async
async def asset_ls(prefix: str | None, limit: int, as_json: bool) -> None:
    """List assets, sorted by key."""
    from events.assets import MAX_ASSET_KEY_LENGTH, list_assets
    from events.bus import Bus

    if prefix is not None and (not prefix or len(prefix) > MAX_ASSET_KEY_LENGTH):
        fail(f"--prefix must be 1 to {MAX_ASSET_KEY_LENGTH} characters", 2)
    async with await Bus.connect(nats_settings()) as bus:
        records = (await list_assets(await bus.kv(bus.layout.assets), prefix=prefix))[:limit]
    if as_json:
        click.echo(json.dumps([r.model_dump(mode="json") for r in records], indent=2))
        return
    for r in records:
        latest = r.latest_materialization
        when = f"{latest.status:<9} {latest.time.isoformat()}" if latest else "referenced only"
        click.echo(f"{r.key}  {when}")


@asset.command("inspect")
@click.argument("key")
@run_async
async def asset_inspect(key: str) -> None:
    """Show the asset KEY and its latest materialisation as JSON."""
    from events.assets import InvalidAssetKey, check_asset_key, get_asset
    from events.bus import Bus

    try:
        check_asset_key(key)
    except InvalidAssetKey as exc:
        fail(str(exc), 2)
    async with await Bus.connect(nats_settings()) as bus:
        record = await get_asset(await bus.kv(bus.layout.assets), key)
    if record is None:
        fail(f"no asset with key {key!r}")
        return
    click.echo(json.dumps(record.model_dump(mode="json"), indent=2))


@asset.command("delete")
@click.argument("key")
@run_async
async def asset_delete(key: str) -> None:
    """Remove the asset KEY from the catalog (the leading orchestrator does it); a later
    materialisation adds it again."""
    from events import control
    from events.assets import InvalidAssetKey, check_asset_key
    from events.bus import Bus

    try:
        check_asset_key(key)
    except InvalidAssetKey as exc:
        fail(str(exc), 2)
    request = control.ControlRequest(action="delete-asset", asset_key=key, source="flowbus/cli")
    async with await Bus.connect(nats_settings()) as bus:
        try:
            reply = await control.ask(bus, request)
        except control.NoController as exc:
            fail(f"the asset could not be deleted now: {exc}; retry shortly")
            return
    if reply.outcome != "ok":
        fail(reply.detail or f"the orchestrator answered {reply.outcome}")
        return
    click.echo(f"deleted asset {key}")
