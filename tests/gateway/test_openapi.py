"""The OpenAPI 3.1 document, and schemathesis fuzzing the live gateway: no 5xx for any input."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from gateway_helpers import ADMIN_KEY

from gateway.api import routers
from gateway.api.openapi import openapi_document


async def test_openapi_document_describes_every_endpoint(anonymous: aiohttp.ClientSession) -> None:
    async with anonymous.get("/api/v1/openapi.json") as r:
        doc = await r.json()
    assert doc["openapi"].startswith("3.1")
    operations = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    for router in routers():
        for ep in router.endpoints:
            assert (ep.method, "/api/v1" + ep.path) in operations
    create = doc["paths"]["/api/v1/deployments"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/DeploymentCreate"}
    name = doc["components"]["schemas"]["DeploymentCreate"]["properties"]["name"]
    assert name["pattern"] and name["description"]
    assert "429" in create["responses"] and "503" in create["responses"]


def test_document_is_generated_from_the_same_models() -> None:
    doc = openapi_document([ep for r in routers() for ep in r.endpoints])
    params = doc["paths"]["/api/v1/flow-runs"]["get"]["parameters"]
    state = next(p for p in params if p["name"] == "state")
    assert state["in"] == "query" and not state["required"]


#: The time budget schemathesis enforces itself (``--max-time``): it stops generating when the
#: budget is spent, so a slow or loaded machine runs fewer cases instead of failing.
FUZZ_SECONDS = 30
#: Only a schemathesis that ignores its own budget (or a hung gateway) reaches this bound.
OUTER_BOUND_SECONDS = FUZZ_SECONDS + 150


@pytest.mark.timeout(OUTER_BOUND_SECONDS + 60)
async def test_schemathesis_finds_no_server_error(start_gateway: Any, tmp_path: Path) -> None:
    # A fixed set of phases and examples: the examples from the schema, then fuzzing with 8
    # cases per operation (repeated until the budget is spent). The coverage phase is left
    # out: it generates thousands of cases for one rich body (automations) and, under a time
    # budget, would use it all before the other operations are reached.
    async with start_gateway(wait_max_seconds=0.2, rate_limit_per_second=0) as gw:
        process = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "schemathesis"), "run",
            f"{gw.url}/api/v1/openapi.json", "--url", gw.url,
            "--checks", "not_a_server_error",
            "--phases", "examples,fuzzing", "--max-examples", "8",
            "--max-time", str(FUZZ_SECONDS),
            "--seed", "1", "--no-shrink", "--workers", "1",
            "--request-timeout", "10", "--generation-database", "none",
            # Live streams never end by design; their inputs are covered by the query tests.
            "--exclude-path-regex", r"/events/(stream|ws)$|/logs$",
            "-H", f"Authorization: Bearer {ADMIN_KEY}",
            "--report-dir", str(tmp_path), "--no-color",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=tmp_path,
        )
        try:
            output, _ = await asyncio.wait_for(process.communicate(), OUTER_BOUND_SECONDS)
        finally:
            if process.returncode is None:
                process.kill()
                await asyncio.wait_for(process.wait(), 10)
    text = output.decode(errors="replace")
    assert process.returncode == 0, text[-6000:]
    assert " passed" in text and "Runtime Error" not in text, text[-3000:]
