"""``flowbus variable get/set/ls/rm`` over the REST API of a real gateway."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from click.testing import CliRunner, Result

from events.bus import Bus
from flowbus.cli import cli
from gateway.service import RunningGateway, running
from gateway.settings import GatewaySettings


@pytest.fixture
async def gateway(bus: Bus) -> AsyncIterator[RunningGateway]:
    async with running(bus, GatewaySettings(port=0, auth=False)) as gw:
        yield gw


async def flowbus(gw: RunningGateway, *args: str) -> Result:
    return await asyncio.to_thread(CliRunner().invoke, cli, list(args),
                                   env={"FLOWBUS_API_URL": gw.url + "/api/v1"},
                                   catch_exceptions=False)


async def test_set_get_ls_rm(gateway: RunningGateway) -> None:
    assert (await flowbus(gateway, "variable", "set", "limits", '{"rows": 10}')).exit_code == 0
    assert (await flowbus(gateway, "variable", "set", "greeting", "hello there")).exit_code == 0
    got = await flowbus(gateway, "variable", "get", "limits")
    assert got.exit_code == 0 and json.loads(got.output) == {"rows": 10}
    changed = await flowbus(gateway, "variable", "set", "limits", "5")
    assert changed.exit_code == 0 and "updated variable limits" in changed.output
    assert json.loads((await flowbus(gateway, "variable", "get", "limits")).output) == 5
    listed = await flowbus(gateway, "variable", "ls")
    assert "greeting" in listed.output and '"hello there"' in listed.output
    missing = await flowbus(gateway, "variable", "get", "limit")
    assert missing.exit_code == 1 and "did you mean 'limits'?" in missing.output
    assert (await flowbus(gateway, "variable", "rm", "limits")).exit_code == 0
    assert (await flowbus(gateway, "variable", "get", "limits")).exit_code == 1


@pytest.mark.parametrize("args", [
    ["variable", "set", "a/b", "1"],
    ["variable", "set", "x" * 1000, "1"],
    ["variable", "get", "../../etc/passwd"],
    ["variable", "rm", "nope"],
    ["variable", "set", "big", "x" * 100_000],  # over the 64 KiB a variable may hold
])
async def test_bad_input_is_a_clear_error(gateway: RunningGateway, args: list[str]) -> None:
    result = await flowbus(gateway, *args)
    assert result.exit_code == 1, result.output
    assert "Error" in result.output and "Traceback" not in result.output
