"""Time-zone-aware datetimes by Prefect's ``prefect.types._datetime`` path.

Example::

    from flowbus.types._datetime import now, parse_datetime

    started = now("UTC")                        # an aware datetime.datetime
    due = parse_datetime("2026-01-01T09:00")    # no zone given: UTC
"""

from __future__ import annotations

import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def _zone(tz: str | Any) -> datetime.tzinfo:
    if isinstance(tz, datetime.tzinfo):
        return tz
    name = tz if isinstance(tz, str) else getattr(tz, "name", None)
    if not isinstance(name, str):
        raise TypeError(f"time zone must be a name or a tzinfo, got {tz!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}") from None


def now(tz: str | Any = "UTC") -> datetime.datetime:
    """The current time in ``tz`` (a zone name such as ``"Europe/Paris"``, or a tzinfo)."""
    return datetime.datetime.now(_zone(tz))


def parse_datetime(dt: str) -> datetime.datetime:
    """An ISO 8601 (or dateutil-readable) timestamp; one without a zone is taken as UTC."""
    from dateutil.parser import parse

    if not isinstance(dt, str):
        raise TypeError(f"parse_datetime takes a string, got {type(dt).__name__}")
    try:
        parsed: datetime.datetime = parse(dt)
    except (ValueError, OverflowError) as exc:
        raise ValueError(f"not a datetime: {dt!r} ({exc})") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=ZoneInfo("UTC"))


__all__ = ["now", "parse_datetime"]
