"""Event sources from Python: create, list, pause, resume, delete; inspect dead letters.

Each call connects to the NATS of ``FLOWBUS_NATS_URL`` (or the settings given)::

    from flowbus.sources import create_source, pause_source

    await create_source({
        "name": "orders", "kind": "nats",
        "connection": {"url": "nats://apps:4222"},
        "subscription": {"subject": "orders.>"},
        "mapping": {"type": "shop.order.created", "data": "{{ body }}"},
    })
    await pause_source("orders")

A definition file (``flowbus source create -f orders.yaml``) is the same mapping in
YAML or JSON; :func:`load_definition` reads one.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from events.bus import Bus
from events.errors import FlowbusError
from events.messages import plain
from events.settings import NatsSettings
from events.source_store import DeadLetter, RedriveReport, SourceStore
from events.sources import Source, SourceSpec, SourceState

MAX_DEFINITION_BYTES = 1024 * 1024

__all__ = [
    "create_source",
    "dead_letters",
    "delete_source",
    "get_source",
    "list_sources",
    "load_definition",
    "pause_source",
    "purge_dead_letters",
    "redrive_dead_letters",
    "resume_source",
    "source_status",
]


class DefinitionError(FlowbusError, ValueError):
    """A source definition file cannot be read or is not valid."""


def load_definition(path: str | Path) -> SourceSpec:
    """Read and validate a source definition from a YAML or JSON file."""
    import yaml

    file = Path(path)
    try:
        with file.open("rb") as f:
            raw = f.read(MAX_DEFINITION_BYTES + 1)
    except OSError as exc:
        raise DefinitionError(f"cannot read {str(path)!r}: {exc.strerror or exc}") from None
    if len(raw) > MAX_DEFINITION_BYTES:
        raise DefinitionError(f"{str(path)!r} is over {MAX_DEFINITION_BYTES} bytes")
    try:
        data = yaml.safe_load(raw) if file.suffix.lower() in (".yaml", ".yml") else json.loads(raw)
    except (yaml.YAMLError, ValueError) as exc:
        raise DefinitionError(f"{str(path)!r} is not valid YAML/JSON: {exc}") from None
    return parse_definition(data, where=str(path))


def parse_definition(data: Any, *, where: str = "definition") -> SourceSpec:
    """Validate a definition; :class:`DefinitionError` naming the offending field."""
    from pydantic import ValidationError

    if isinstance(data, SourceSpec):
        return data
    if not isinstance(data, Mapping):
        raise DefinitionError(f"{where}: a source definition is a mapping, "
                              f"got {type(data).__name__}")
    try:
        return SourceSpec.model_validate(dict(data))
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        field = ".".join(str(p) for p in first.get("loc", ())) or "definition"
        message = plain(first)
        raise DefinitionError(f"{where}: field {field!r}: {message}") from None


@asynccontextmanager
async def _store(settings: NatsSettings | None) -> AsyncIterator[SourceStore]:
    async with await Bus.connect(settings or NatsSettings(), name="flowbus-sdk") as bus:
        yield await SourceStore.open(bus)


async def create_source(definition: SourceSpec | Mapping[str, Any], *, replace: bool = False,
                        settings: NatsSettings | None = None) -> Source:
    """Store a new source (or replace one with ``replace=True``); the gateways start it."""
    spec = parse_definition(definition)
    async with _store(settings) as store:
        return await (store.replace(spec) if replace else store.create(spec))


async def list_sources(*, settings: NatsSettings | None = None) -> list[Source]:
    async with _store(settings) as store:
        return await store.all()


async def get_source(name: str, *, settings: NatsSettings | None = None) -> Source:
    """The source named ``name``; :class:`~events.errors.NotFound` if there is none."""
    async with _store(settings) as store:
        return await store.require(name)


async def source_status(name: str, *, settings: NatsSettings | None = None) -> SourceState | None:
    async with _store(settings) as store:
        await store.require(name)
        return await store.status(name)


async def pause_source(name: str, *, settings: NatsSettings | None = None) -> Source:
    """Stop consuming; the broker keeps what arrives meanwhile (where it can)."""
    async with _store(settings) as store:
        return await store.set_paused(name, True)


async def resume_source(name: str, *, settings: NatsSettings | None = None) -> Source:
    async with _store(settings) as store:
        return await store.set_paused(name, False)


async def delete_source(name: str, *, settings: NatsSettings | None = None) -> None:
    async with _store(settings) as store:
        await store.delete(name)


async def dead_letters(name: str, *, settings: NatsSettings | None = None) -> list[DeadLetter]:
    async with _store(settings) as store:
        await store.require(name)
        return await store.dead_letter_list(name, limit=10_000)


async def redrive_dead_letters(name: str, keys: list[str] | None = None, *,
                               settings: NatsSettings | None = None) -> RedriveReport:
    """Map dead letters again with the current mapping; publish those that now map."""
    async with _store(settings) as store:
        return await store.redrive(name, keys)


async def purge_dead_letters(name: str, keys: list[str] | None = None, *,
                             settings: NatsSettings | None = None) -> int:
    async with _store(settings) as store:
        await store.require(name)
        return await store.purge(name, keys)
