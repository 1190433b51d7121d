"""Assets: their keys, the events that say one was materialised, and the catalog in KV.

An asset is data a flow produces (a table, a file, a model), named by a URI-like key
(``s3://bucket/sales.csv``, ``postgres://db/orders``). A task decorated with
``@materialize`` publishes, when it ends, one event per asset it materialises:

- ``flowbus.asset.materialization.succeeded`` / ``flowbus.asset.materialization.failed``
  (Prefect 3's ``prefect.asset.materialization.succeeded`` / ``.failed``), its
  ``subject`` the asset key and its ``data`` a :class:`MaterializationData`;
- ``flowbus.asset.referenced`` (Prefect's ``prefect.asset.referenced``) for each
  upstream asset it read, its ``data`` a :class:`ReferenceData`.

The orchestrator folds those events into the ``flowbus-assets`` bucket, one
:class:`AssetRecord` per asset (:func:`apply_event`), which the API and the CLI read.

>>> check_asset_key("s3://bucket/sales.csv")
's3://bucket/sales.csv'
>>> asset_kv_key("s3://b/x")
'czM6Ly9iL3g'
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from events.cloudevent import CloudEvent
from events.errors import UpdateConflict
from events.kv import KV

# --- keys ---------------------------------------------------------------------------------

MAX_ASSET_KEY_LENGTH = 512
MAX_ASSET_DESCRIPTION_LENGTH = 2500
#: What one asset's materialisation metadata may weigh, as JSON.
MAX_METADATA_BYTES = 64 * 1024
# Prefect 3.8.8's restricted characters; flowbus also refuses every other control character.
RESTRICTED_ASSET_CHARACTERS = frozenset('\n\r\t\0 #?&%"\'<>[]{}|\\^`')
_URI = re.compile(r"[a-z0-9]+://")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class InvalidAssetKey(ValueError):
    """An asset key that is not a URI-like string flowbus accepts."""


def check_asset_key(key: Any) -> str:
    """Return ``key`` when it is a valid asset key, else raise :class:`InvalidAssetKey`.

    A key is a URI with a lowercase scheme (``s3://bucket/x.csv``), at most
    512 characters, with none of Prefect's restricted characters (space, ``# ? & %
    " ' < > [ ] { } | \\ ^ `` ` and control characters).
    """
    if not isinstance(key, str):
        raise InvalidAssetKey(f"an asset key must be a string, got {type(key).__name__}")
    if len(key) > MAX_ASSET_KEY_LENGTH:
        raise InvalidAssetKey(
            f"asset key is {len(key)} characters, over the limit of {MAX_ASSET_KEY_LENGTH}")
    bad = sorted({c for c in key if c in RESTRICTED_ASSET_CHARACTERS or _CONTROL.match(c)})
    if bad:
        raise InvalidAssetKey(
            f"asset key {key[:100]!r} contains {', '.join(repr(c) for c in bad)}, which an "
            "asset key cannot contain")
    if _URI.match(key) is None:
        raise InvalidAssetKey(
            f"asset key {key[:100]!r} is not a URI with a lowercase scheme; "
            "write it like s3://bucket/folder/asset.csv")
    return key


AssetKey = Annotated[
    str,
    Field(max_length=MAX_ASSET_KEY_LENGTH,
          description="a URI with a lowercase scheme, e.g. s3://bucket/folder/data.csv"),
    AfterValidator(check_asset_key),
]


def asset_kv_key(key: str) -> str:
    """The ``flowbus-assets`` key of an asset: its key in unpadded base64url (reversible)."""
    return base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")


def key_of_kv_key(kv_key: str) -> str | None:
    """The asset key stored under ``kv_key`` (None when it is not one of ours)."""
    try:
        return base64.urlsafe_b64decode(kv_key + "=" * (-len(kv_key) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None


# --- events -------------------------------------------------------------------------------

ASSET_EVENT_PREFIX = "flowbus.asset."
MATERIALIZATION_SUCCEEDED = "flowbus.asset.materialization.succeeded"
MATERIALIZATION_FAILED = "flowbus.asset.materialization.failed"
REFERENCED = "flowbus.asset.referenced"
#: Prefect 3's event names and the flowbus names of the same events.
PREFECT_EVENT_NAMES = {
    "prefect.asset.materialization.succeeded": MATERIALIZATION_SUCCEEDED,
    "prefect.asset.materialization.failed": MATERIALIZATION_FAILED,
    "prefect.asset.referenced": REFERENCED,
}
MaterializationStatus = Literal["succeeded", "failed"]


class AssetProperties(BaseModel):
    """What is known about an asset besides its key (Prefect's ``AssetProperties``).

    Given on an ``Asset``, they replace the properties the catalog knows.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str | None = Field(default=None, max_length=1000,
                             description="Human readable name of the Asset.")
    url: str | None = Field(default=None, max_length=4096,
                            description="Visitable url to view the Asset.")
    description: str | None = Field(default=None, max_length=MAX_ASSET_DESCRIPTION_LENGTH,
                                    description="Description of the Asset.")
    owners: list[str] | None = Field(default=None, max_length=100,
                                     description="Owners of the Asset.")


class AssetRef(BaseModel):
    """An asset as an event names it: its key and, when given, its properties."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: AssetKey
    properties: AssetProperties | None = Field(default=None, description="set on the Asset")


class MaterializationData(BaseModel):
    """The ``data`` of a ``flowbus.asset.materialization.*`` event."""

    model_config = ConfigDict(extra="forbid")

    asset: AssetRef = Field(description="the asset materialised (also the event's subject)")
    status: MaterializationStatus = Field(description="whether the task run succeeded")
    upstream: list[AssetRef] = Field(
        default_factory=list, description="assets it was made from: asset_deps and those "
        "materialised by the tasks whose results were its inputs")
    materialized_by: str | None = Field(default=None, max_length=1000,
                                        description="the tool that made it (dbt, spark, ...)")
    metadata: dict[str, Any] = Field(default_factory=dict,
                                     description="what add_asset_metadata() attached")
    flow_run_id: str | None = Field(default=None, description="the flow run it happened in")
    task_run_id: str | None = Field(default=None, description="the task run that made it")
    related: list[dict[str, str]] = Field(
        default_factory=list, description="related resources, for triggers' match_related: "
        "upstream assets (role asset), the tool (role asset-materialized-by), the runs")


class ReferenceData(BaseModel):
    """The ``data`` of a ``flowbus.asset.referenced`` event."""

    model_config = ConfigDict(extra="forbid")

    asset: AssetRef = Field(description="the upstream asset read (also the event's subject)")
    flow_run_id: str | None = Field(default=None, description="the flow run it happened in")
    task_run_id: str | None = Field(default=None, description="the task run that read it")


# --- the catalog --------------------------------------------------------------------------


class Materialization(BaseModel):
    """One materialisation of an asset, as the catalog keeps the latest."""

    model_config = ConfigDict(extra="forbid")

    event_id: str = Field(description="id of the event that reported it")
    time: datetime = Field(description="when it happened (the event's time)")
    status: MaterializationStatus = Field(description="succeeded or failed")
    upstream: list[str] = Field(default_factory=list, description="keys of upstream assets")
    materialized_by: str | None = Field(default=None, description="the tool that made it")
    metadata: dict[str, Any] = Field(default_factory=dict, description="its metadata")
    flow_run_id: str | None = Field(default=None, description="the flow run")
    task_run_id: str | None = Field(default=None, description="the task run")


class AssetRecord(BaseModel):
    """An asset in ``flowbus-assets``, as the API returns it."""

    model_config = ConfigDict(extra="forbid")

    key: str = Field(description="the asset key")
    properties: AssetProperties | None = Field(default=None,
                                               description="the latest properties given")
    properties_time: datetime | None = Field(
        default=None, description="time of the event that gave those properties")
    latest_materialization: Materialization | None = Field(
        default=None, description="the latest materialisation, succeeded or failed; "
        "null for an asset only referenced as upstream so far")
    last_succeeded: datetime | None = Field(
        default=None, description="when it was last materialised successfully")
    last_referenced: datetime | None = Field(default=None,
                                             description="when a task last read it as upstream")
    created: datetime = Field(description="when the catalog first heard of it")
    updated: datetime = Field(description="when its record last changed")


def parse_asset_event(event: CloudEvent) -> MaterializationData | ReferenceData:
    """The typed data of an asset event; ``ValueError`` naming what is wrong otherwise."""
    model: type[MaterializationData] | type[ReferenceData]
    if event.type in (MATERIALIZATION_SUCCEEDED, MATERIALIZATION_FAILED):
        model = MaterializationData
    elif event.type == REFERENCED:
        model = ReferenceData
    else:
        raise ValueError(f"{event.type[:100]!r} is not an asset event")
    try:
        data = model.model_validate(event.data)
    except ValidationError as exc:
        raise ValueError(f"{event.type} event {event.id[:100]!r} has invalid data: "
                         f"{exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}") from None
    if data.asset.key != event.subject:
        raise ValueError(f"{event.type} event {event.id[:100]!r}: subject {event.subject!r} "
                         f"is not the asset key {data.asset.key!r}")
    if isinstance(data, MaterializationData):
        expected = "succeeded" if event.type == MATERIALIZATION_SUCCEEDED else "failed"
        if data.status != expected:
            raise ValueError(f"{event.type} event {event.id[:100]!r} says status {data.status!r}")
    return data


def apply_event(record: AssetRecord | None, event: CloudEvent,
                data: MaterializationData | ReferenceData, now: datetime) -> AssetRecord | None:
    """The record after ``event`` (None: nothing changes, e.g. an older event came late)."""
    when = event.time or now
    if record is None:
        record = AssetRecord(key=data.asset.key, created=now, updated=now)
    new = record.model_copy(deep=True)
    if data.asset.properties is not None and (
            record.properties_time is None or when > record.properties_time):
        new.properties = data.asset.properties  # the newest properties given win
        new.properties_time = when
    if isinstance(data, ReferenceData):
        if record.last_referenced is None or when > record.last_referenced:
            new.last_referenced = when
    else:
        latest = record.latest_materialization
        if latest is None or (when, event.id) > (latest.time, latest.event_id):
            new.latest_materialization = Materialization(
                event_id=event.id, time=when, status=data.status,
                upstream=[a.key for a in data.upstream], materialized_by=data.materialized_by,
                metadata=data.metadata, flow_run_id=data.flow_run_id,
                task_run_id=data.task_run_id)
        if data.status == "succeeded" and (record.last_succeeded is None
                                           or when > record.last_succeeded):
            new.last_succeeded = when
    if new == record:
        return None
    new.updated = now
    return new


async def record_event(kv: KV, event: CloudEvent, now: datetime) -> AssetRecord | None:
    """Fold one asset event into its record (compare-and-set); the record as stored."""
    data = parse_asset_event(event)

    def step(raw: bytes | None) -> bytes | None:
        current = None if raw is None else AssetRecord.model_validate_json(raw)
        new = apply_event(current, event, data, now)
        return None if new is None else new.model_dump_json().encode()

    entry = await kv.update(asset_kv_key(data.asset.key), step)
    return None if entry is None else AssetRecord.model_validate_json(entry.value)


async def get_asset(kv: KV, key: str) -> AssetRecord | None:
    """The record of the asset ``key`` (a valid key), or None."""
    entry = await kv.get(asset_kv_key(key))
    return None if entry is None else AssetRecord.model_validate_json(entry.value)


async def delete_asset(kv: KV, key: str) -> AssetRecord | None:
    """Remove the asset ``key`` (a valid key) from the catalog; its record before, or
    None when there is none. Compare-and-set on the revision read, so a
    materialisation folded in at the same moment is not lost silently: the delete is
    tried again on the newer record. A later event about the asset adds it again."""
    for _ in range(5):
        entry = await kv.get(asset_kv_key(key), latest=True)
        if entry is None:
            return None
        try:
            await kv.delete(entry.key, revision=entry.revision)
        except UpdateConflict:
            continue
        return AssetRecord.model_validate_json(entry.value)
    raise UpdateConflict(f"asset {key!r} kept changing while being deleted; retry")


async def list_assets(kv: KV, *, prefix: str | None = None) -> list[AssetRecord]:
    """Every asset (whose key starts with ``prefix``), sorted by key."""
    keys = [k for k in await kv.keys() if (key := key_of_kv_key(k)) is not None
            and (prefix is None or key.startswith(prefix))]
    entries = await asyncio.gather(*(kv.get(k) for k in keys))
    records = [AssetRecord.model_validate_json(e.value) for e in entries if e is not None]
    records.sort(key=lambda r: r.key)
    return records


def metadata_size(metadata: dict[str, Any]) -> int:
    """The size of ``metadata`` as JSON; ``TypeError`` naming a value JSON cannot hold."""
    try:
        return len(json.dumps(metadata, allow_nan=False).encode())
    except (TypeError, ValueError) as exc:
        raise TypeError(f"asset metadata must be JSON (str, numbers, bools, None, lists, "
                        f"dicts with str keys): {exc}") from None
