"""The deployments the orchestrator knows, kept current from ``flowbus-deployments``.

The catalog loads every deployment at start, then follows the bucket's changes
(``KV.watch``), recompiling only the deployment that changed. A deployment whose
triggers or schedules are invalid is refused as a whole and logged with the reason
(the gateway validates before storing; this guards against writes that bypass it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from pydantic import ValidationError

from events.errors import FlowbusError
from events.kv import KV
from events.records import Deployment
from events.schedules import Schedule, parse_schedule
from events.validation import check_deployment
from orchestrator.index import DeployedTrigger, TriggerIndex, compile_triggers

log = logging.getLogger("flowbus.orchestrator.deployments")

Listener = Callable[[str, Deployment | None], None]


class DeploymentCatalog:
    """Deployments by name, their compiled triggers and schedules."""

    def __init__(self, kv: KV, index: TriggerIndex | None = None) -> None:
        self._kv = kv
        self.index = index or TriggerIndex()
        self.deployments: dict[str, Deployment] = {}
        self.schedules: dict[str, list[Schedule]] = {}
        self.rejected: dict[str, str] = {}
        self._names: dict[str, str] = {}  # KV key -> deployment name
        # Ids of triggers that were changed or removed: their state can go.
        self.retired: set[str] = set()
        self._listeners: list[Listener] = []

    def on_change(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def get(self, name: str) -> Deployment | None:
        return self.deployments.get(name)

    def apply(self, key: str, value: bytes | None) -> None:
        """Take one stored value (None: deleted) into the catalog."""
        if value is None:
            self._drop(self._names.pop(key, key))
            return
        try:
            deployment = Deployment.model_validate_json(value)
            check_deployment(deployment)
            triggers: list[DeployedTrigger] = compile_triggers(deployment)
            schedules = [parse_schedule(s) for s in deployment.schedules]
        except (ValidationError, FlowbusError, ValueError) as exc:
            reason = str(exc).splitlines()[0]
            log.error("deployment %r refused: %s", key, reason)
            self.rejected[key] = reason
            self._drop(self._names.pop(key, key))
            return
        self.rejected.pop(key, None)
        name = deployment.name
        previous = self._names.get(key)
        if previous is not None and previous != name:
            self._drop(previous)
        self._names[key] = name
        self.deployments[name] = deployment
        self.schedules[name] = schedules
        self.retired |= self.index.replace_deployment(name, triggers)
        for listener in self._listeners:
            listener(name, deployment)

    def _drop(self, name: str) -> None:
        self.deployments.pop(name, None)
        self.schedules.pop(name, None)
        self.retired |= self.index.replace_deployment(name, [])
        for listener in self._listeners:
            listener(name, None)

    async def load(self) -> None:
        """Read every stored deployment (and forget those no longer stored)."""
        keys = await self._kv.keys()
        for key in set(self._names) - set(keys):
            self.apply(key, None)
        for key in keys:
            # From the stream leader: a lagging replica could answer "absent" and so
            # drop a deployment, and with it every event of its triggers (events.kv).
            entry = await self._kv.get(key, latest=True)
            self.apply(key, None if entry is None else entry.value)

    async def follow(self) -> None:
        """Apply changes as they are stored, until cancelled."""
        async for change in self._kv.watch():
            self.apply(change.key, change.value)
