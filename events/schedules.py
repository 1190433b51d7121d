"""Deployment schedules: cron with a time zone, interval with an anchor, RRule.

Exactly one of ``cron``, ``interval`` or ``rrule`` is given. :meth:`Schedule.next_after`
and :meth:`Schedule.latest_at_or_before` are pure functions of time, so the
orchestrator creates only the next run (just in time) and, after downtime, applies
``catchup`` (``skip`` the missed slots, or run the ``latest`` one once).

>>> from datetime import datetime, UTC
>>> s = Schedule(cron="0 9 * * *", timezone="Europe/Berlin")
>>> s.next_after(datetime(2026, 1, 1, 12, tzinfo=UTC)).isoformat()
'2026-01-02T08:00:00+00:00'
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from events.errors import FlowbusError
from events.messages import plain

DEFAULT_ANCHOR = datetime(2020, 1, 1, tzinfo=UTC)
MIN_INTERVAL = timedelta(seconds=1)


class InvalidSchedule(FlowbusError, ValueError):
    """A schedule definition is malformed; the message names the part at fault."""


class Schedule(BaseModel):
    """One schedule of a deployment."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cron: str | None = Field(default=None, max_length=256, description="cron expression")
    interval: timedelta | None = Field(default=None, description="period between runs")
    anchor_date: datetime | None = Field(default=None, description="an instant the interval hits")
    rrule: str | None = Field(default=None, max_length=4096, description="RFC 5545 recurrence")
    timezone: str = Field(default="UTC", description="IANA zone the schedule is read in")
    active: bool = Field(default=True, description="an inactive schedule creates no runs")
    catchup: Literal["skip", "latest"] = Field(
        default="skip", description="after downtime: skip missed slots, or run the latest once"
    )
    parameters: dict[str, Any] = Field(default_factory=dict, description="parameters for its runs")

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"time zone {value!r} is unknown; use an IANA name like 'Europe/Berlin'") from None
        return value

    @field_validator("anchor_date")
    @classmethod
    def _anchor_zone(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("anchor_date needs a time zone offset, e.g. 2024-01-01T00:00:00Z")
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> Schedule:
        given = [k for k in ("cron", "interval", "rrule") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of cron, interval or rrule (got {given or 'none'})")
        if self.interval is not None and self.interval < MIN_INTERVAL:
            raise ValueError(f"interval {self.interval} is below the minimum of 1 second")
        if self.cron is not None:
            from croniter import croniter

            if not croniter.is_valid(self.cron):
                raise ValueError(f"cron expression {self.cron!r} is not valid")
        if self.rrule is not None:
            try:
                self._rule()
            except (ValueError, TypeError) as exc:
                raise ValueError(f"rrule {self.rrule[:80]!r} is not valid: {exc}") from None
        return self

    @property
    def kind(self) -> str:
        return "cron" if self.cron else "interval" if self.interval else "rrule"

    def _zone_info(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def _rule(self) -> Any:
        from dateutil.rrule import rrulestr

        assert self.rrule is not None
        start = (self.anchor_date or DEFAULT_ANCHOR).astimezone(self._zone_info())
        if "DTSTART" in self.rrule.upper():
            return rrulestr(self.rrule, forceset=True)
        return rrulestr(self.rrule, dtstart=start, forceset=True)

    def next_after(self, when: datetime) -> datetime | None:
        """The first slot strictly after ``when`` (UTC), or None when the schedule ended."""
        if self.cron is not None:
            from croniter import croniter

            it = croniter(self.cron, when.astimezone(self._zone_info()))
            return _utc(it.get_next(datetime))
        if self.interval is not None:
            anchor = self.anchor_date or DEFAULT_ANCHOR
            steps = (when - anchor) // self.interval + 1
            return _utc(anchor + steps * self.interval)
        found = self._rule().after(when.astimezone(self._zone_info()), inc=False)
        return None if found is None else _utc(found)

    def latest_at_or_before(self, when: datetime) -> datetime | None:
        """The last slot at or before ``when`` (UTC), or None if there was none."""
        if self.cron is not None:
            from croniter import croniter

            it = croniter(self.cron, (when + timedelta(microseconds=1)).astimezone(self._zone_info()))
            return _utc(it.get_prev(datetime))
        if self.interval is not None:
            anchor = self.anchor_date or DEFAULT_ANCHOR
            steps = (when - anchor) // self.interval
            slot = anchor + steps * self.interval
            return _utc(slot) if slot >= anchor else None
        found = self._rule().before(when.astimezone(self._zone_info()), inc=True)
        return None if found is None else _utc(found)

    def key(self) -> str:
        """A stable id of this schedule's definition (slot ids derive from it)."""
        canonical = json.dumps(self.model_dump(mode="json", exclude={"active"}), sort_keys=True)
        return hashlib.blake2b(canonical.encode(), digest_size=8).hexdigest()


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def parse_schedule(value: Any) -> Schedule:
    """Validate one schedule; :class:`InvalidSchedule` naming what is wrong."""
    try:
        return Schedule.model_validate(value)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        message = plain(first)
        raise InvalidSchedule(f"schedule {where or 'definition'}: {message}") from None
