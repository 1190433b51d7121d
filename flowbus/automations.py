"""Automations from Python: ``Automation(...).create()``, ``read``, ``update``, ``delete``,
``pause`` and ``resume``, through NATS (``FLOWBUS_NATS_URL``) with the shared schema,
or, with no NATS URL and ``FLOWBUS_API_URL`` set, through the gateway's API.

>>> auto = Automation(  # doctest: +SKIP
...     name="load after extract",
...     trigger={"expect": ["flowbus.flow-run.Completed"],
...              "match": {"data.deployment_name": "extract"}},
...     actions=[{"type": "run-deployment", "deployment": "load",
...               "parameters": {"rows": "{{ result }}"}}],
... ).create()
>>> Automation.read(name="load after extract").pause()  # doctest: +SKIP

Every method has an async twin with an ``a`` prefix (``await auto.acreate()``).
A definition that is wrong (unknown action, bad template, a loop) is refused when
the object is built (pydantic's ``ValidationError``, a ``ValueError`` naming the field),
before anything is stored.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
from collections.abc import Coroutine
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel, Field, field_validator

from events import automation_store as store
from events.automations import AutomationSpec
from events.errors import FlowbusError
from events.settings import nats_url_from_env

__all__ = ["Automation"]

T = TypeVar("T")


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine from sync code, also when an event loop is already running here."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


async def _with_store(operation: str, *args: Any) -> Any:
    """``operation`` of the automation store, over NATS or else over the API."""
    from events.bus import Bus
    from events.settings import NatsSettings

    if nats_url_from_env() is not None:
        async with await Bus.connect(NatsSettings(), name="flowbus-sdk") as bus:
            return await getattr(store, operation)(bus, *args)
    if os.environ.get("FLOWBUS_API_URL"):
        from flowbus import _automations_api
        from flowbus.client import get_client

        async with get_client() as client:
            return await getattr(_automations_api, operation)(client, *args)
    raise FlowbusError("automations live on a flowbus server: set FLOWBUS_NATS_URL or FLOWBUS_API_URL")


def _plain(stored: Any) -> Any:
    """A stored automation as JSON data (the NATS store gives a model, the API a dict)."""
    return stored.model_dump(mode="json") if isinstance(stored, BaseModel) else stored


class Automation(AutomationSpec):
    """An automation: when ``trigger`` fires, run ``actions`` (see docs/automations.md)."""

    id: str | None = Field(default=None, description="set once created")
    created: datetime | None = Field(default=None, description="when it was created")
    updated: datetime | None = Field(default=None, description="when it last changed")

    @field_validator("trigger", mode="before")
    @classmethod
    def _plain_trigger(cls, value: Any) -> Any:
        # Prefect's code passes EventTrigger(...) objects: take them by their fields.
        if isinstance(value, BaseModel) and not hasattr(value, "flow_control"):
            return value.model_dump(mode="json", exclude_unset=True)
        return value

    def _spec(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude={"id", "created", "updated"})

    def _take(self, stored: Any) -> Automation:
        return Automation.model_validate(_plain(stored))

    async def acreate(self) -> Automation:
        """Store this automation; the stored copy, with its id."""
        if self.id is not None:
            raise FlowbusError(f"automation {self.id} exists already; use update()")
        return self._take(await _with_store("create_automation", self._spec()))

    def create(self) -> Automation:
        return _run(self.acreate())

    @classmethod
    async def aread(cls, id: str | None = None, name: str | None = None) -> Automation:
        """The automation with ``id``, or the one called ``name``; NotFound if none."""
        key = id or name
        if not key:
            raise FlowbusError("read() needs an id or a name")
        stored = await _with_store("find_automation", key)
        return cls.model_validate(_plain(stored))

    @classmethod
    def read(cls, id: str | None = None, name: str | None = None) -> Automation:
        return _run(cls.aread(id=id, name=name))

    def _id(self) -> str:
        if self.id is None:
            raise FlowbusError("this automation was not created yet; call create() first")
        return self.id

    async def aupdate(self) -> Automation:
        """Store this definition over the automation with the same id."""
        automation_id = self._id()
        return self._take(await _with_store("update_automation", automation_id, self._spec()))

    def update(self) -> Automation:
        return _run(self.aupdate())

    async def adelete(self) -> None:
        automation_id = self._id()
        await _with_store("delete_automation", automation_id)

    def delete(self) -> None:
        _run(self.adelete())

    async def apause(self) -> Automation:
        """Stop the automation firing (it keeps its definition)."""
        automation_id = self._id()
        return self._take(await _with_store("set_enabled", automation_id, False))

    def pause(self) -> Automation:
        return _run(self.apause())

    async def aresume(self) -> Automation:
        automation_id = self._id()
        return self._take(await _with_store("set_enabled", automation_id, True))

    def resume(self) -> Automation:
        return _run(self.aresume())
