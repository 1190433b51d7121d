"""Where sources live: definitions and status in ``<ns>-sources``, dead letters beside them.

One set of operations for the REST API, the SDK and the CLI::

    store = await SourceStore.open(bus)
    await store.create(spec)
    await store.set_paused("orders", True)
    report = await store.redrive("orders")

Keys in the sources bucket are ``def.<name>`` (the :class:`~events.sources.Source`)
and ``status.<name>`` (its :class:`~events.sources.SourceState`). Dead letters are
``<name>.<message key>`` in ``<ns>-source-dead-letters`` (kept 14 days): the same
message failing again overwrites its letter instead of adding one.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from events.bus import Bus
from events.errors import AlreadyExists, NotFound
from events.kv import KV
from events.source_activity import activity_key
from events.source_messages import MappingFailed, SourceMessage, message_key, to_event
from events.sources import Source, SourceSpec, SourceState

DEFINITION_PREFIX = "def."
STATUS_PREFIX = "status."


class DeadLetter(BaseModel):
    """A message whose mapping failed, with the reason; redrive maps it again."""

    model_config = ConfigDict(extra="forbid")

    key: str = Field(description="stable key of the message within its source")
    source: str = Field(description="the source that received it")
    reason: str = Field(description="why it could not become a CloudEvent")
    received: datetime = Field(description="when it first failed")
    failed: datetime = Field(description="when it last failed")
    attempts: int = Field(default=1, ge=1, description="how often it failed (redrives included)")
    topic: str = Field(description="subject, topic or routing key it came on")
    headers: dict[str, str] = Field(default_factory=dict, description="its headers")
    message_id: str | None = Field(default=None, description="its own id, if it had one")
    position: str | None = Field(default=None, description="where the broker kept it")
    properties: dict[str, Any] = Field(default_factory=dict, description="broker properties")
    body_base64: str = Field(description="its body, base64")

    def message(self) -> SourceMessage:
        return SourceMessage(
            body=base64.b64decode(self.body_base64), topic=self.topic, headers=self.headers,
            message_id=self.message_id, position=self.position, properties=self.properties,
        )


@dataclass(frozen=True, slots=True)
class RedriveReport:
    """What a redrive did: events published, letters that failed again."""

    redriven: int
    failed: int


def _jsonable(properties: Any) -> dict[str, Any]:
    return dict(json.loads(json.dumps(dict(properties), default=str)))


class SourceStore:
    """Source definitions, status and dead letters over a connected bus."""

    def __init__(self, bus: Bus, sources: KV, dead_letters: KV) -> None:
        self.bus = bus
        self.sources = sources
        self.dead_letters = dead_letters

    @classmethod
    async def open(cls, bus: Bus) -> SourceStore:
        return cls(bus, await bus.kv(bus.layout.sources),
                   await bus.kv(bus.layout.source_dead_letters))

    # --- definitions ---------------------------------------------------------------------

    async def create(self, spec: SourceSpec) -> Source:
        """Store a new source; :class:`AlreadyExists` if the name is taken."""
        now = datetime.now(UTC)
        source = Source.model_validate({**spec.model_dump(), "created": now, "updated": now})
        try:
            await self.sources.create(DEFINITION_PREFIX + spec.name, _dump(source))
        except AlreadyExists:
            raise AlreadyExists(f"a source named {spec.name!r} already exists") from None
        return source

    async def replace(self, spec: SourceSpec) -> Source:
        """Store ``spec`` over an existing source (or a new one), keeping its creation time."""
        now = datetime.now(UTC)

        def step(raw: bytes | None) -> bytes:
            created = now if raw is None else Source.model_validate_json(raw).created
            return _dump(Source.model_validate({**spec.model_dump(), "created": created,
                                                "updated": now}))

        entry = await self.sources.update(DEFINITION_PREFIX + spec.name, step)
        assert entry is not None
        return Source.model_validate_json(entry.value)

    async def get(self, name: str) -> Source | None:
        entry = await self.sources.get(DEFINITION_PREFIX + name)
        return None if entry is None else Source.model_validate_json(entry.value)

    async def require(self, name: str) -> Source:
        source = await self.get(name)
        if source is None:
            raise NotFound(f"no source named {name!r}")
        return source

    async def all(self) -> list[Source]:
        out = []
        for key in await self.sources.keys():
            if key.startswith(DEFINITION_PREFIX):
                source = await self.get(key.removeprefix(DEFINITION_PREFIX))
                if source is not None:
                    out.append(source)
        return out

    async def set_paused(self, name: str, paused: bool) -> Source:
        """Pause or resume; :class:`NotFound` naming the source if it does not exist."""
        missing = NotFound(f"no source named {name!r}")

        def step(raw: bytes | None) -> bytes | None:
            if raw is None:
                raise missing
            source = Source.model_validate_json(raw)
            if source.paused == paused:
                return None
            return _dump(source.model_copy(update={"paused": paused,
                                                   "updated": datetime.now(UTC)}))

        entry = await self.sources.update(DEFINITION_PREFIX + name, step)
        if entry is None:
            raise missing
        return Source.model_validate_json(entry.value)

    async def delete(self, name: str) -> None:
        """Delete the source, its status, its activity record and its dead letters."""
        await self.require(name)
        await self.sources.delete(DEFINITION_PREFIX + name)
        await self.sources.delete(STATUS_PREFIX + name)
        await self.sources.delete(activity_key(name))
        await self.purge(name)

    # --- status --------------------------------------------------------------------------

    async def status(self, name: str) -> SourceState | None:
        entry = await self.sources.get(STATUS_PREFIX + name)
        return None if entry is None else SourceState.model_validate_json(entry.value)

    async def put_status(self, name: str, state: SourceState) -> None:
        await self.sources.put(STATUS_PREFIX + name, state.model_dump_json().encode())

    # --- dead letters --------------------------------------------------------------------

    async def add_dead_letter(self, source: str, message: SourceMessage, reason: str,
                              *, limit: int) -> bool:
        """Keep ``message`` with ``reason``; False (nothing kept) when ``limit`` are held."""
        key = message_key(message)
        full_key = f"{source}.{key}"
        now = datetime.now(UTC)
        existing = await self.dead_letters.get(full_key)
        if existing is None and len(await self.dead_letter_keys(source)) >= limit:
            return False
        letter = DeadLetter(
            key=key, source=source, reason=reason, received=now, failed=now,
            topic=message.topic, headers=dict(message.headers), message_id=message.message_id,
            position=message.position, properties=_jsonable(message.properties),
            body_base64=base64.b64encode(message.body).decode(),
        )
        if existing is not None:
            old = DeadLetter.model_validate_json(existing.value)
            letter = letter.model_copy(update={"received": old.received,
                                               "attempts": old.attempts + 1})
        await self.dead_letters.put(full_key, letter.model_dump_json().encode())
        return True

    async def dead_letter_keys(self, source: str) -> list[str]:
        prefix = f"{source}."
        return [k.removeprefix(prefix) for k in await self.dead_letters.keys()
                if k.startswith(prefix)]

    async def dead_letter_list(self, source: str, *, limit: int = 1000) -> list[DeadLetter]:
        out = []
        for key in (await self.dead_letter_keys(source))[:limit]:
            entry = await self.dead_letters.get(f"{source}.{key}")
            if entry is not None:
                out.append(DeadLetter.model_validate_json(entry.value))
        return sorted(out, key=lambda d: d.received)

    async def purge(self, source: str, keys: list[str] | None = None) -> int:
        """Drop dead letters (all of the source's, or those in ``keys``); how many went."""
        held = set(await self.dead_letter_keys(source))
        wanted = held if keys is None else held & set(keys)
        for key in wanted:
            await self.dead_letters.delete(f"{source}.{key}")
        return len(wanted)

    async def redrive(self, name: str, keys: list[str] | None = None) -> RedriveReport:
        """Map dead letters again with the source's current mapping and publish them.

        A letter that maps is published (its event id is the one it would have had,
        so a redrive repeated is stored once) and dropped; one that fails again stays,
        with the new reason.
        """
        source = await self.require(name)
        redriven = failed = 0
        for letter in await self.dead_letter_list(name):
            if keys is not None and letter.key not in keys:
                continue
            try:
                event = await to_event(source, letter.message())
            except MappingFailed as exc:
                failed += 1
                updated = letter.model_copy(update={"reason": exc.reason,
                                                    "failed": datetime.now(UTC),
                                                    "attempts": letter.attempts + 1})
                await self.dead_letters.put(f"{name}.{letter.key}",
                                            updated.model_dump_json().encode())
                continue
            await self.bus.publish(event)
            await self.dead_letters.delete(f"{name}.{letter.key}")
            redriven += 1
        return RedriveReport(redriven, failed)


def _dump(model: BaseModel) -> bytes:
    return model.model_dump_json().encode()
