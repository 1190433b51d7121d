"""What a running source has been doing: a small record next to its status.

The gateway running a source keeps counters and the source's lag, and writes them to
``activity.<name>`` in ``<ns>-sources`` at most every :data:`WRITE_INTERVAL_SECONDS`
(only when something changed), and once more when it stops running the source. The
sources page and ``GET /api/v1/sources/{name}`` read it. The counters count from when
that gateway started running the source; the record is the last writer's.

>>> activity_key("plant")
'activity.plant'
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from events.kv import KV

ACTIVITY_PREFIX = "activity."
WRITE_INTERVAL_SECONDS = 2.0


class SourceActivity(BaseModel):
    """A source's traffic, lag and last error, as the gateway running it last wrote."""

    model_config = ConfigDict(extra="forbid")

    gateway: str | None = Field(default=None, description="the gateway that wrote it")
    since: datetime = Field(description="when that gateway started running the source")
    messages_in: int = Field(default=0, ge=0, description="messages received since then")
    events_out: int = Field(default=0, ge=0, description="events stored since then "
                                                         "(duplicates not counted)")
    mapping_failures: int = Field(default=0, ge=0,
                                  description="messages dead-lettered since then")
    last_message: datetime | None = Field(default=None,
                                          description="when the last message was received")
    lag: int | None = Field(default=None, ge=0, description=(
        "messages waiting upstream at the last batch (a JetStream consumer's pending "
        "count, an AMQP queue's depth); null for kinds that cannot tell (core NATS, MQTT)"))
    last_error: str | None = Field(default=None, description="the last connection error")
    last_error_at: datetime | None = Field(default=None, description="when it happened")
    updated: datetime = Field(description="when this record was written")


def activity_key(name: str) -> str:
    return ACTIVITY_PREFIX + name


async def put_activity(kv: KV, name: str, activity: SourceActivity) -> None:
    await kv.put(activity_key(name), activity.model_dump_json().encode())


async def get_activity(kv: KV, name: str) -> SourceActivity | None:
    """The source's activity record; None when none was written (or it is unreadable)."""
    entry = await kv.get(activity_key(name))
    if entry is None:
        return None
    try:
        return SourceActivity.model_validate_json(entry.value)
    except ValidationError:
        return None
