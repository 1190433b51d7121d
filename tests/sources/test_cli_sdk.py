"""``flowbus source`` and ``flowbus.sources``, run as a user runs them, against the test NATS.

The lifecycle test starts real ``flowbus`` processes; the failure-listing and refusal
tests run the same commands in this process (tests/cli_here.py).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from events.bus import Bus
from events.errors import AlreadyExists, NotFound
from events.settings import NatsSettings
from events.source_messages import SourceMessage
from events.source_store import SourceStore
from flowbus import sources as sdk
from tests.cli_here import flowbus_here

ROOT = Path(__file__).resolve().parents[2]

YAML = """\
name: orders
kind: nats-jetstream
description: orders of the shop
connection:
  url: nats://127.0.0.1:4222
  username: shop
  password: {env: SOURCE_SECRET_SHOP}
subscription:
  stream: SHOP
  subject: shop.orders.>
mapping:
  type: shop.order.created
  data: "{{ body }}"
"""


def flowbus(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flowbus.cli", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=30, check=False)


async def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(flowbus, *args, env=env)


async def test_cli_create_ls_inspect_pause_resume_delete(
    flowbus_env: dict[str, str], bus: Bus, tmp_path: Path
) -> None:
    path = tmp_path / "orders.yaml"
    path.write_text(YAML)
    created = await run("source", "create", "-f", str(path), env=flowbus_env)
    assert created.returncode == 0, created.stderr
    assert "source orders created" in created.stdout
    listed = await run("source", "ls", env=flowbus_env)
    assert "orders" in listed.stdout and "nats-jetstream" in listed.stdout
    # The program ran above; the other commands' answers come from them run here.
    again = await flowbus_here("source", "create", "-f", str(path), env=flowbus_env)
    assert again.returncode == 1 and "already exists" in again.stderr
    inspected = await flowbus_here("source", "inspect", "orders", env=flowbus_env)
    assert '"env": "SOURCE_SECRET_SHOP"' in inspected.stdout
    assert (await flowbus_here("source", "pause", "orders", env=flowbus_env)).returncode == 0
    assert (await (await SourceStore.open(bus)).require("orders")).paused
    assert (await flowbus_here("source", "resume", "orders", env=flowbus_env)).returncode == 0
    assert not (await (await SourceStore.open(bus)).require("orders")).paused
    assert (await flowbus_here("source", "delete", "orders", env=flowbus_env)).returncode == 0
    missing = await flowbus_here("source", "inspect", "orders", env=flowbus_env)
    assert missing.returncode == 1 and "no source named 'orders'" in missing.stderr


async def test_cli_failures_list_redrive_purge(flowbus_env: dict[str, str], bus: Bus,
                                               tmp_path: Path) -> None:
    path = tmp_path / "orders.yaml"
    path.write_text(YAML.replace('"{{ body }}"', '"{{ body.n }}"'))
    assert (await flowbus_here("source", "create", "-f", str(path), env=flowbus_env)).returncode == 0
    store = await SourceStore.open(bus)
    await store.add_dead_letter("orders", SourceMessage(b'{"m": 1}', "shop.orders.a"),
                                "mapping failed: no n", limit=10)
    listed = await flowbus_here("source", "failures", "orders", env=flowbus_env)
    assert "mapping failed: no n" in listed.stdout
    redriven = await flowbus_here("source", "failures", "orders", "redrive", env=flowbus_env)
    assert "redriven 0, failed again 1" in redriven.stdout
    purged = await flowbus_here("source", "failures", "orders", "purge", env=flowbus_env)
    assert "purged 1" in purged.stdout


HOSTILE_FILES = [
    ("not: [valid", "is not valid YAML"),
    ("- a\n- b\n", "a source definition is a mapping"),
    (YAML.replace("password: {env: SOURCE_SECRET_SHOP}", "password: hunter2"),
     "connection.password"),
    (YAML.replace("kind: nats-jetstream", "kind: kafka"), "'kind'"),
    (YAML.replace("stream: SHOP", "stream: 'SH OP'"), "subscription.nats-jetstream.stream"),
]


@pytest.mark.parametrize(("text", "message"), HOSTILE_FILES)
async def test_cli_refuses_bad_definition_files_naming_the_field(
    flowbus_env: dict[str, str], tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    result = await flowbus_here("source", "create", "-f", str(path), env=flowbus_env)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "hunter2" not in result.stderr


async def test_cli_refuses_hostile_names_and_oversized_files(
    flowbus_env: dict[str, str], tmp_path: Path
) -> None:
    bad = await flowbus_here("source", "pause", "../../etc", env=flowbus_env)
    assert bad.returncode == 2 and "is not a source name" in bad.stderr
    big = tmp_path / "big.yaml"
    big.write_text("a: " + "x" * (2 * 1024 * 1024))
    result = await flowbus_here("source", "create", "-f", str(big), env=flowbus_env)
    assert result.returncode == 2 and "over" in result.stderr


async def test_sdk_create_list_pause_delete(nats_settings: NatsSettings, bus: Bus) -> None:
    spec = {"name": "sdk", "kind": "nats", "connection": {"url": "nats://127.0.0.1:1"},
            "subscription": {"subject": "a.>"}}
    created = await sdk.create_source(spec, settings=nats_settings)
    assert created.name == "sdk"
    with pytest.raises(AlreadyExists):
        await sdk.create_source(spec, settings=nats_settings)
    assert [s.name for s in await sdk.list_sources(settings=nats_settings)] == ["sdk"]
    assert (await sdk.pause_source("sdk", settings=nats_settings)).paused
    assert not (await sdk.resume_source("sdk", settings=nats_settings)).paused
    assert await sdk.source_status("sdk", settings=nats_settings) is None
    await sdk.delete_source("sdk", settings=nats_settings)
    with pytest.raises(NotFound):
        await sdk.get_source("sdk", settings=nats_settings)
