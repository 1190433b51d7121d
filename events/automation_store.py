"""Automations, channels and dead letters in NATS: the operations the API, CLI and SDK share.

Definitions live in ``flowbus-automations`` (key: automation id); channels
(``channel.<name>``) and dead letters (``dead.<key>``) in ``flowbus-automation-state``.
A redrive is an event (``flowbus.automation.redrive-requested``) the orchestrator
acts on, so an action is only ever executed in one place.

>>> async def add(bus: Bus) -> Automation:
...     return await create_automation(bus, {"name": "n", "trigger": {"expect": ["a.b"]},
...                                          "actions": [{"type": "do-nothing"}]})
"""

from __future__ import annotations

import difflib
import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from events.automation_actions import RunDeployment
from events.automations import (
    Automation,
    AutomationSpec,
    InvalidAutomation,
    parse_automation,
    parse_stored,
)
from events.bus import Bus
from events.cloudevent import CloudEvent
from events.errors import NotFound
from events.notification_channels import Channel, channel_key, parse_channel
from events.parameters import check_parameters
from events.records import Deployment
from events.sealed import SecretBox, box_or_none, has_secrets, refuse_start, seal_tree, sealed_paths

REDRIVE_REQUESTED = "flowbus.automation.redrive-requested"
DEAD_PREFIX = "dead."


class DeadLetter(BaseModel):
    """An action that kept failing: what it was, why it failed, what to redo it from."""

    model_config = ConfigDict(extra="forbid")

    key: str = Field(description="the action's idempotency key")
    automation_id: str = Field(description="the automation")
    automation_name: str = Field(description="its name when it failed")
    action_index: int = Field(description="position in the firing's actions")
    action: dict[str, Any] = Field(description="the action's definition")
    reason: str = Field(description="the last error")
    attempts: int = Field(description="attempts made")
    firing: dict[str, Any] = Field(description="firing key, event and events the action saw")
    failed_at: datetime = Field(description="when it was dead-lettered")


def _now() -> datetime:
    return datetime.now(UTC)


def stored_form(definition: BaseModel, *, keep_plain: bool = False) -> bytes:
    """A definition as stored: JSON with every secret sealed (``FLOWBUS_SECRETS_KEY``).

    A definition without secrets needs no key; one with a plain secret and no key is
    refused with :class:`events.secretbox.SecretsKeyError` naming the setting, unless
    ``keep_plain`` (a flag flipped on a record stored before sealing existed).
    """
    tree = definition.model_dump(mode="json")
    box = box_or_none()
    if box is not None or not keep_plain:
        tree = seal_tree(tree, box)
    return json.dumps(tree, separators=(",", ":")).encode()


def refuse_sealed_input(definition: Any, what: str) -> None:
    """Secrets are given in plain text: a value that is already sealed is refused."""
    found = sealed_paths(definition)
    if found:
        raise InvalidAutomation(
            f"{what} holds a sealed value ({found[0]}); give secrets in plain text, "
            "flowbus seals them when it stores them")


def target_problems(spec: AutomationSpec, deployments: Mapping[str, Deployment]) -> list[str]:
    """Run-deployment actions naming a missing deployment, or static parameters it refuses."""
    problems: list[str] = []
    groups = (("actions", spec.actions), ("actions_on_trigger", spec.actions_on_trigger),
              ("actions_on_resolve", spec.actions_on_resolve))
    for group, actions in groups:
        for i, action in enumerate(actions):
            if not isinstance(action, RunDeployment) or action.deployment is None:
                continue
            where = f"{group}[{i}] (run-deployment)"
            target = deployments.get(action.deployment)
            if target is None:
                close = difflib.get_close_matches(action.deployment, list(deployments), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                problems.append(f"{where}: deployment {action.deployment!r} does not exist{hint}")
                continue
            for p in check_parameters(target.parameter_schema,
                                      {**target.parameters, **action.parameters}, templates=True):
                problems.append(f"{where}: parameter {p}")
    return problems


async def check_targets(bus: Bus, spec: AutomationSpec) -> None:
    """:class:`InvalidAutomation` when a run-deployment action could never start a run."""
    from events.deployments import list_deployments

    if not any(isinstance(a, RunDeployment) and a.deployment
               for a in (*spec.actions, *spec.actions_on_trigger, *spec.actions_on_resolve)):
        return
    problems = target_problems(spec, {d.name: d for d in await list_deployments(bus)})
    if problems:
        raise InvalidAutomation("; ".join(problems))


async def create_automation(bus: Bus, definition: dict[str, Any] | AutomationSpec) -> Automation:
    """Validate and store a new automation (:class:`InvalidAutomation` naming the field)."""
    spec = parse_automation(definition)
    refuse_sealed_input(spec.model_dump(mode="json"), "the automation")
    await check_targets(bus, spec)
    now = _now()
    automation = Automation(**spec.model_dump(), id=str(uuid.uuid4()), created=now, updated=now)
    kv = await bus.kv(bus.layout.automations)
    await kv.create(automation.id, stored_form(automation))
    return automation


async def get_automation(bus: Bus, automation_id: str) -> Automation:
    kv = await bus.kv(bus.layout.automations)
    entry = await kv.get(automation_id) if _plain(automation_id) else None
    if entry is None:
        raise NotFound(f"automation {automation_id!r} not found")
    return parse_stored(entry.value)


async def find_automation(bus: Bus, id_or_name: str) -> Automation:
    """An automation by id, or by name when exactly one has it."""
    try:
        return await get_automation(bus, id_or_name)
    except NotFound:
        named = [a for a in await list_automations(bus) if a.name == id_or_name]
        if len(named) == 1:
            return named[0]
        if named:
            raise NotFound(f"{len(named)} automations are named {id_or_name!r}; use an id") from None
        raise


async def list_automations(bus: Bus) -> list[Automation]:
    kv = await bus.kv(bus.layout.automations)
    out = []
    for key in await kv.keys():
        entry = await kv.get(key)
        if entry is not None:
            try:
                out.append(parse_stored(entry.value))
            except InvalidAutomation:
                continue
    return sorted(out, key=lambda a: str(a.created))


async def update_automation(bus: Bus, automation_id: str, definition: dict[str, Any] | AutomationSpec) -> Automation:
    spec = parse_automation(definition)
    refuse_sealed_input(spec.model_dump(mode="json"), "the automation")
    await check_targets(bus, spec)
    current = await get_automation(bus, automation_id)
    automation = Automation(**spec.model_dump(), id=current.id, created=current.created, updated=_now())
    kv = await bus.kv(bus.layout.automations)
    await kv.put(automation.id, stored_form(automation))
    return automation


async def set_enabled(bus: Bus, automation_id: str, enabled: bool) -> Automation:
    """Pause (False) or resume (True) an automation, by compare-and-set."""
    kv = await bus.kv(bus.layout.automations)

    def flip(raw: bytes | None) -> bytes:
        if raw is None:
            raise NotFound(f"automation {automation_id!r} not found")
        current = parse_stored(raw)
        return stored_form(current.model_copy(update={"enabled": enabled, "updated": _now()}),
                           keep_plain=True)

    if not _plain(automation_id):
        raise NotFound(f"automation {automation_id!r} not found")
    entry = await kv.update(automation_id, flip)
    assert entry is not None
    return parse_stored(entry.value)


async def delete_automation(bus: Bus, automation_id: str) -> None:
    await get_automation(bus, automation_id)
    kv = await bus.kv(bus.layout.automations)
    await kv.delete(automation_id)


def _plain(key: str) -> bool:
    return bool(key) and len(key) <= 128 and not any(c in key for c in " .*>\t\n\r/\\")


async def save_channel(bus: Bus, definition: dict[str, Any]) -> Channel:
    channel = parse_channel(definition)
    refuse_sealed_input(channel.model_dump(mode="json"), "the channel")
    kv = await bus.kv(bus.layout.automation_state)
    await kv.put(channel_key(channel.name), stored_form(channel))
    return channel


async def get_channel(bus: Bus, name: str) -> Channel:
    kv = await bus.kv(bus.layout.automation_state)
    entry = await kv.get(channel_key(name)) if _plain(name) else None
    if entry is None:
        raise NotFound(f"notification channel {name!r} not found; define it first")
    return Channel.model_validate_json(entry.value)


async def list_channels(bus: Bus) -> list[Channel]:
    kv = await bus.kv(bus.layout.automation_state)
    out = []
    for key in await kv.keys():
        if key.startswith("channel."):
            entry = await kv.get(key)
            if entry is not None:
                out.append(Channel.model_validate_json(entry.value))
    return out


async def delete_channel(bus: Bus, name: str) -> None:
    await get_channel(bus, name)
    kv = await bus.kv(bus.layout.automation_state)
    await kv.delete(channel_key(name))


async def check_secrets_key(bus: Bus) -> SecretBox | None:
    """The orchestrator's key at start; :class:`SecretsKeyError` when secrets are stored without one."""
    box = box_or_none()
    if box is not None:
        return box
    for bucket, prefix, what in ((bus.layout.automations, "", "stored automations"),
                                 (bus.layout.automation_state, "channel.", "notification channels")):
        kv = await bus.kv(bucket)
        for key in await kv.keys():
            if key.startswith(prefix) and has_secrets(await kv.get_json(key)):
                raise refuse_start("orchestrator", what)
    return None


async def list_dead_letters(bus: Bus, automation_id: str | None = None) -> list[DeadLetter]:
    kv = await bus.kv(bus.layout.automation_state)
    out = []
    for key in await kv.keys():
        if not key.startswith(DEAD_PREFIX):
            continue
        entry = await kv.get(key)
        if entry is None:
            continue
        letter = DeadLetter.model_validate_json(entry.value)
        if automation_id is None or letter.automation_id == automation_id:
            out.append(letter)
    return sorted(out, key=lambda d: d.failed_at)


async def count_dead_letters(bus: Bus) -> int:
    """How many dead letters wait (keys only: cheap enough for a metric)."""
    kv = await bus.kv(bus.layout.automation_state)
    return sum(1 for key in await kv.keys() if key.startswith(DEAD_PREFIX))


async def request_redrive(bus: Bus, key: str, *, source: str = "flowbus") -> None:
    """Ask the orchestrator to run a dead-lettered action again (NotFound if there is none)."""
    kv = await bus.kv(bus.layout.automation_state)
    if not _plain(key) or await kv.get(DEAD_PREFIX + key) is None:
        raise NotFound(f"no dead letter with key {key!r}")
    await bus.publish(CloudEvent.create(
        REDRIVE_REQUESTED, source=source, subject=f"flowbus.automation.dead-letter.{key}",
        data={"key": key},
    ))


async def purge_dead_letters(bus: Bus, keys: list[str] | None = None) -> int:
    """Delete the given dead letters (all when None); how many were deleted."""
    kv = await bus.kv(bus.layout.automation_state)
    wanted = None if keys is None else {DEAD_PREFIX + k for k in keys}
    count = 0
    for key in await kv.keys():
        if key.startswith(DEAD_PREFIX) and (wanted is None or key in wanted):
            await kv.delete(key)
            count += 1
    return count
