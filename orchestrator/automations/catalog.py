"""The automations the orchestrator knows, kept current from ``flowbus-automations``.

Each enabled automation's trigger (without its flow control) is compiled by the same
code as deployment triggers (:func:`orchestrator.index.compile_trigger`) into an
index of its own, with no deployment. The trigger id derives from the automation id
and the definition, so an update that keeps the trigger keeps its state.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from events.automations import Automation, InvalidAutomation, core_trigger, parse_stored
from events.errors import FlowbusError
from events.kv import KV
from events.triggers import parse_deployment_trigger, trigger_id
from orchestrator.index import DeployedTrigger, TriggerIndex, compile_trigger

log = logging.getLogger("flowbus.orchestrator.automations")


class AutomationCatalog:
    """Automations by id, their compiled triggers by trigger id."""

    def __init__(self, kv: KV) -> None:
        self._kv = kv
        self.index = TriggerIndex()
        self.automations: dict[str, Automation] = {}
        self.rejected: dict[str, str] = {}
        self._by_trigger: dict[str, str] = {}
        # Trigger ids dropped by an update or delete: their state is purged at the next tick.
        self.retired: set[str] = set()

    def get(self, automation_id: str) -> Automation | None:
        return self.automations.get(automation_id)

    def owner(self, tid: str) -> Automation | None:
        """The automation a trigger id belongs to."""
        automation_id = self._by_trigger.get(tid)
        return None if automation_id is None else self.automations.get(automation_id)

    def enabled(self) -> int:
        return sum(1 for a in self.automations.values() if a.enabled)

    def apply(self, key: str, value: bytes | None) -> None:
        """Take one stored value (None: deleted) into the catalog."""
        if value is None:
            self._drop(key)
            return
        try:
            automation = parse_stored(value)
            compiled: list[DeployedTrigger] = []
            if automation.enabled:
                core = parse_deployment_trigger(core_trigger(automation.trigger))
                tid = trigger_id(f"automation\x1f{automation.id}", core)
                compiled = [compile_trigger(tid, None, core)]
        except (InvalidAutomation, FlowbusError, ValueError) as exc:
            reason = str(exc).splitlines()[0]
            log.error("automation %r refused: %s", key, reason)
            self.rejected[key] = reason
            self._drop(key)
            return
        self.rejected.pop(key, None)
        self.automations[key] = automation
        for tid in [t for t, a in self._by_trigger.items() if a == key]:
            del self._by_trigger[tid]
            self.retired.add(tid)
        for deployed in compiled:
            self._by_trigger[deployed.id] = key
        self.index.replace_deployment(key, compiled)

    def _drop(self, key: str) -> None:
        self.automations.pop(key, None)
        for tid in [t for t, a in self._by_trigger.items() if a == key]:
            del self._by_trigger[tid]
            self.retired.add(tid)
        self.index.replace_deployment(key, [])

    async def load(self) -> None:
        for key in await self._kv.keys():
            entry = await self._kv.get(key, latest=True)  # a lagging replica says "absent"
            self.apply(key, None if entry is None else entry.value)

    async def follow(self, changed: Callable[[], None] = lambda: None) -> None:
        """Apply changes as they are stored, until cancelled."""
        async for change in self._kv.watch():
            self.apply(change.key, change.value)
            changed()
