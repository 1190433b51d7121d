"""``flowbus asset ls`` / ``inspect`` over the catalog the orchestrator keeps."""

from __future__ import annotations

import asyncio
import json

import pytest
from click.testing import CliRunner, Result

from events.bus import Bus
from events.settings import NatsSettings
from flowbus.cli import cli
from tests.assets.asset_helpers import PRODUCED_EVENTS, index, produce


async def flowbus(env: dict[str, str], *args: str) -> Result:
    """``flowbus ...`` in this process, on a thread (commands run their own event loop)."""
    settings = {k: v for k, v in env.items() if k.startswith("FLOWBUS_")}
    return await asyncio.to_thread(CliRunner().invoke, cli, list(args), env=settings,
                                   catch_exceptions=False)


async def test_ls_and_inspect_show_the_catalog(
        bus: Bus, nats_settings: NatsSettings, flowbus_env: dict[str, str]) -> None:
    await produce(nats_settings)
    await index(bus, PRODUCED_EVENTS)
    listed = await flowbus(flowbus_env, "asset", "ls")
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert [line.split()[0] for line in lines] == [
        "postgres://shop/orders", "s3://lake/clean.parquet", "s3://lake/report.csv"]
    assert "referenced only" in lines[0] and "succeeded" in lines[1]

    as_json = await flowbus(flowbus_env, "asset", "ls", "--prefix", "s3://lake/c", "--json")
    assert [a["key"] for a in json.loads(as_json.output)] == ["s3://lake/clean.parquet"]

    shown = await flowbus(flowbus_env, "asset", "inspect", "s3://lake/clean.parquet")
    assert shown.exit_code == 0, shown.output
    record = json.loads(shown.output)
    assert record["latest_materialization"]["metadata"] == {"rows": 3}
    assert record["latest_materialization"]["upstream"] == ["postgres://shop/orders"]


@pytest.mark.parametrize(("args", "code", "message"), [
    (("asset", "inspect", "not a uri"), 2, "contains ' '"),
    (("asset", "inspect", "bucket/x"), 2, "not a URI with a lowercase scheme"),
    (("asset", "inspect", "s3://b/" + "x" * 600), 2, "over the limit of 512"),
    (("asset", "inspect", "s3://b/\x1b[31m"), 2, "'\\x1b'"),
    (("asset", "inspect", "s3://never/made"), 1, "no asset with key 's3://never/made'"),
    (("asset", "ls", "--prefix", "x" * 600), 2, "--prefix must be 1 to 512 characters"),
    (("asset", "ls", "--limit", "0"), 2, "--limit"),
])
async def test_bad_or_unknown_keys_are_refused_naming_them(
        bus: Bus, flowbus_env: dict[str, str], args: tuple[str, ...], code: int,
        message: str) -> None:
    done = await flowbus(flowbus_env, *args)
    assert done.exit_code == code, done.output
    assert message in done.output


async def test_delete_asks_the_leading_orchestrator(
        bus: Bus, nats_settings: NatsSettings, flowbus_env: dict[str, str]) -> None:
    from events.assets import get_asset
    from tests.control_desk import control_desk

    await produce(nats_settings)
    await index(bus, PRODUCED_EVENTS)
    key = "s3://lake/report.csv"
    nobody = await flowbus(flowbus_env, "asset", "delete", key)  # no orchestrator leading
    assert nobody.exit_code == 1 and "retry shortly" in nobody.output, nobody.output
    async with control_desk(bus):
        deleted = await flowbus(flowbus_env, "asset", "delete", key)
        assert deleted.exit_code == 0 and f"deleted asset {key}" in deleted.output, deleted.output
        again = await flowbus(flowbus_env, "asset", "delete", key)
        assert again.exit_code == 1 and "no asset with key" in again.output, again.output
        for bad in ("no-scheme", "s3://b/<x>", "s3://b/" + "x" * 600):
            refused = await flowbus(flowbus_env, "asset", "delete", bad)
            assert refused.exit_code == 2, (bad, refused.output)
    assert await get_asset(await bus.kv(bus.layout.assets), key) is None
    listed = await flowbus(flowbus_env, "asset", "ls")
    assert key not in listed.output and "s3://lake/clean.parquet" in listed.output
