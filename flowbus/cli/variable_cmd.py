"""``flowbus variable``: get, set, list and delete variables (``Variable.get`` in flows).

Through the gateway's REST API (``/api/v1/variables``).
"""

from __future__ import annotations

import json
from typing import Any

import click

from flowbus.cli._api import api_client
from flowbus.cli._common import print_table, run_async


def _segment(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


def _parse(raw: str) -> Any:
    """The value as JSON when it parses (``3``, ``true``, ``{"a": 1}``), else the string."""
    try:
        return json.loads(raw)
    except ValueError:
        return raw


@click.group()
def variable() -> None:
    """Variables: named JSON values flows read with Variable.get."""


@variable.command("get")
@click.argument("name")
@run_async
async def get(name: str) -> None:
    """Print variable NAME's value as JSON."""
    from events.errors import NotFound

    async with api_client() as client:
        found = await client.read_variable_by_name(name)
        if found is None:
            known = [v["name"] for v in await client.read_variables()]
            from flowbus.cli._lookup import did_you_mean

            raise NotFound(f"variable {name!r} not found{did_you_mean(name, known)} "
                           "(see `flowbus variable ls`)")
    click.echo(json.dumps(found["value"]))


@variable.command("set")
@click.argument("name")
@click.argument("value")
@click.option("--tag", "tags", multiple=True, help="a tag (repeatable)")
@run_async
async def set_(name: str, value: str, tags: tuple[str, ...]) -> None:
    """Create or change variable NAME; VALUE is JSON when it parses, else a string."""
    parsed = _parse(value)
    async with api_client() as client:
        if await client.read_variable_by_name(name) is None:
            await client.create_variable(name, parsed, list(tags))
            click.echo(f"created variable {name}")
        else:
            await client.update_variable(name, parsed, list(tags) if tags else None)
            click.echo(f"updated variable {name}")


@variable.command("ls")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@run_async
async def ls(as_json: bool) -> None:
    """List variables and their values."""
    async with api_client() as client:
        items = await client.read_variables()
    if as_json:
        click.echo(json.dumps(items, indent=2))
        return
    rows = []
    for v in sorted(items, key=lambda v: v["name"]):
        shown = json.dumps(v.get("value"))
        rows.append([v["name"], shown if len(shown) <= 80 else shown[:77] + "...",
                     ", ".join(v.get("tags") or [])])
    print_table(["name", "value", "tags"], rows,
                empty="no variables; set one with `flowbus variable set NAME VALUE`")


@variable.command("rm")
@click.argument("name")
@run_async
async def rm(name: str) -> None:
    """Delete variable NAME."""
    async with api_client() as client:
        await client.request("DELETE", f"/variables/{_segment(name)}")
    click.echo(f"deleted variable {name}")
