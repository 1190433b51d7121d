"""Done when: a deployment triggered by an asset materialisation runs.

Real processes all the way: `flowbus dev` (its embedded NATS, gateway, orchestrator
and runner with warm worker processes) serving a project of two deployments. The
first runs a flow whose `@materialize` task makes ``s3://lake/orders.csv``; the
second is triggered by that asset's ``flowbus.asset.materialization.succeeded`` event
(matched on the asset key) and gets the event's metadata as a parameter; a third
names the event as Prefect does (``prefect.asset.materialization.succeeded``) and runs
too. The asset
appears in the API with its latest materialisation.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest

from tests.shutdown import stop_process

ROOT = Path(__file__).resolve().parents[2]
KEY = "s3://lake/orders.csv"

FLOWS = '''
from flowbus import flow, task
from flowbus.assets import Asset, AssetProperties, add_asset_metadata, materialize

orders = Asset(key="s3://lake/orders.csv", properties=AssetProperties(name="Orders"))


@task
def extract(n: int) -> list[int]:
    return list(range(n))


@materialize(orders, asset_deps=["postgres://shop/orders"], by="python")
def export(rows: list[int]) -> int:
    add_asset_metadata(orders, {"rows": len(rows)})
    return len(rows)


@materialize("s3://lake/other.csv")
def other() -> None:
    pass


@flow
def produce(n: int = 3) -> int:
    other()
    return export(extract(n))


@flow
def consume(rows: int, asset: str) -> str:
    return f"{asset} has {rows} rows"
'''

PROJECT = '''
deployments:
  - name: produce
    entrypoint: flows.py:produce
  - name: consume
    entrypoint: flows.py:consume
    triggers:
      - expect: ["flowbus.asset.materialization.succeeded"]
        match:
          flowbus.resource.id: "s3://lake/orders.csv"
        parameters:
          rows: "{{ event.data.metadata.rows }}"
          asset: "{{ event.subject }}"
  - name: consume-prefect
    entrypoint: flows.py:consume
    triggers:
      - expect: ["prefect.asset.materialization.succeeded"]
        match:
          prefect.resource.id: "s3://lake/orders.csv"
        parameters:
          rows: "{{ event.data.metadata.rows }}"
          asset: "{{ event.subject }}"
'''


@pytest.fixture
async def dev(tmp_path: Path) -> AsyncIterator[str]:
    project = tmp_path / "project"
    project.mkdir()
    (project / "flows.py").write_text(textwrap.dedent(FLOWS))
    (project / "flowbus.yaml").write_text(textwrap.dedent(PROJECT))
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWBUS_")}
    env["FLOWBUS_HOME"] = str(tmp_path / "home")
    env["FLOWBUS_SECRETS_KEY"] = os.environ["FLOWBUS_SECRETS_KEY"]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "flowbus.cli", "dev", "--nats-port", "0", "--gateway-port", "0",
        "--project", str(project), cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        async with asyncio.timeout(90):
            while not any("flowbus dev is ready" in line for line in lines):
                line = (await proc.stdout.readline()).decode()
                assert line, "flowbus dev exited early:\n" + "".join(lines)
                lines.append(line)
        match = re.search(r"gateway +(http://\S+)", "".join(lines))
        assert match, "".join(lines)
        yield match.group(1)
    finally:
        await stop_process(proc, what="flowbus dev", sig=signal.SIGINT)


async def _final_run(http: aiohttp.ClientSession, api: str, deployment: str) -> dict[str, Any]:
    async with asyncio.timeout(90):
        while True:
            async with http.get(f"{api}/flow-runs", params={"deployment": deployment}) as r:
                assert r.status == 200, await r.text()
                items = (await r.json())["items"]
            for run in items:
                if run["state"]["name"] in ("Completed", "Failed", "Crashed"):
                    return dict(run)
            await asyncio.sleep(0.3)


async def _asset(http: aiohttp.ClientSession, api: str, key: str) -> dict[str, Any]:
    async with asyncio.timeout(60):
        while True:
            async with http.get(f"{api}/assets/{quote(key, safe='')}") as r:
                assert r.status in (200, 404), await r.text()
                if r.status == 200:
                    body = await r.json()
                    if body["latest_materialization"] is not None:
                        return dict(body)
            await asyncio.sleep(0.3)


@pytest.mark.timeout(300)
async def test_a_materialisation_triggers_the_deployment_that_waits_for_the_asset(dev: str) -> None:
    api = f"{dev}/api/v1"
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{api}/deployments/produce/runs", json={"parameters": {"n": 4}}) as r:
            assert r.status in (200, 201, 202), await r.text()
        produced = await _final_run(http, api, "produce")
        assert produced["state"]["name"] == "Completed", produced

        consumed = await _final_run(http, api, "consume")
        assert consumed["state"]["name"] == "Completed", consumed
        assert consumed["parameters"] == {"rows": 4, "asset": KEY}
        assert consumed["triggering_event"] is not None
        # A trigger written with Prefect's event name matches flowbus's event.
        by_prefect_name = await _final_run(http, api, "consume-prefect")
        assert by_prefect_name["state"]["name"] == "Completed", by_prefect_name
        assert by_prefect_name["parameters"] == {"rows": 4, "asset": KEY}

        asset = await _asset(http, api, KEY)
        latest = asset["latest_materialization"]
        assert latest["status"] == "succeeded"
        assert latest["flow_run_id"] == produced["id"]
        assert latest["metadata"] == {"rows": 4}
        assert latest["materialized_by"] == "python"
        assert latest["upstream"] == ["postgres://shop/orders"]
        assert asset["properties"]["name"] == "Orders"

        # The upstream asset is in the catalog as referenced; the other asset is listed,
        # and its materialisation did not trigger the deployment a second time.
        upstream = await _asset_record(http, api, "postgres://shop/orders")
        assert upstream["latest_materialization"] is None
        assert upstream["last_referenced"] is not None
        async with http.get(f"{api}/assets") as r:
            keys = [a["key"] for a in (await r.json())["items"]]
        assert keys == ["postgres://shop/orders", "s3://lake/orders.csv", "s3://lake/other.csv"]
        async with http.get(f"{api}/flow-runs", params={"deployment": "consume"}) as r:
            assert len((await r.json())["items"]) == 1


async def _asset_record(http: aiohttp.ClientSession, api: str, key: str) -> dict[str, Any]:
    async with http.get(f"{api}/assets/{quote(key, safe='')}") as r:
        assert r.status == 200, await r.text()
        return dict(await r.json())
