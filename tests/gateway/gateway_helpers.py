"""Helpers the gateway tests share (fixtures are in conftest.py)."""

from __future__ import annotations

from typing import Any

import aiohttp

from tests.stored import stored_events

__all__ = ["ADMIN_KEY", "listed", "problem", "stored_events"]

ADMIN_KEY = "admin-key-for-the-tests-0123456789"


def problem(body: dict[str, Any]) -> str:
    """The detail of a problem body (asserting it is one)."""
    assert {"type", "title", "status", "detail"} <= set(body), body
    return str(body["detail"])


async def listed(client: aiohttp.ClientSession, **params: str) -> tuple[list[str], int]:
    """The ids of one page of ``GET /api/v1/flow-runs`` and the total matching."""
    async with client.get("/api/v1/flow-runs", params=params) as r:
        assert r.status == 200, await r.text()
        body = await r.json()
    return [item["id"] for item in body["items"]], body["total"]
