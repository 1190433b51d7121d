"""The automation store over the gateway's REST API (``/api/v1/automations``), for
:mod:`flowbus.automations` when the process has an API URL and no NATS URL.

Each function mirrors the one of :mod:`events.automation_store` with the client in
place of the bus; answers are the API's JSON objects.
"""

from __future__ import annotations

from typing import Any

from events.errors import NotFound
from flowbus.client import ApiNotFound, FlowbusClient


async def create_automation(client: FlowbusClient, spec: dict[str, Any]) -> dict[str, Any]:
    return await client.create_automation(spec)


async def find_automation(client: FlowbusClient, id_or_name: str) -> dict[str, Any]:
    """By id, or by name when exactly one automation has it (as the NATS store)."""
    try:
        return await client.read_automation(id_or_name)
    except ApiNotFound:
        named = [a for a in await client.read_automations() if a.get("name") == id_or_name]
        if len(named) == 1:
            return named[0]
        if named:
            raise NotFound(f"{len(named)} automations are named {id_or_name!r}; use an id") from None
        raise NotFound(f"automation {id_or_name!r} not found") from None


async def update_automation(client: FlowbusClient, automation_id: str, spec: dict[str, Any]) -> dict[str, Any]:
    return await client.update_automation(automation_id, spec)


async def delete_automation(client: FlowbusClient, automation_id: str) -> None:
    await client.delete_automation(automation_id)


async def set_enabled(client: FlowbusClient, automation_id: str, enabled: bool) -> dict[str, Any]:
    current = await client.read_automation(automation_id)
    spec = {k: v for k, v in current.items() if k not in ("id", "created", "updated")}
    return await client.update_automation(automation_id, {**spec, "enabled": enabled})
