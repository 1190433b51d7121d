"""Schedule objects for `serve`, `to_deployment` and `deploy`, by Prefect's names.

Example::

    from datetime import timedelta
    from flowbus.schedules import Cron, Interval, RRule

    etl.serve("etl", schedules=[
        Cron("0 3 * * *", timezone="Europe/Berlin"),
        Interval(timedelta(hours=1), parameters={"full": False}),
        RRule("FREQ=WEEKLY;BYDAY=MO"),
    ])

Each returns the `Schedule` model deployments carry (validated at once: a bad cron
expression or time zone is an error here, naming what was wrong).
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

from events.schedules import InvalidSchedule, Schedule, parse_schedule


def _common(timezone: str | None, active: bool, parameters: dict[str, Any] | None, slug: str | None) -> dict[str, Any]:
    if slug is not None:
        raise InvalidSchedule(f"schedule slug {slug!r}: flowbus schedules have no slug; leave it out")
    fields: dict[str, Any] = {"active": active, "parameters": dict(parameters or {})}
    if timezone is not None:
        fields["timezone"] = timezone
    return fields


def Cron(
    cron: str,
    timezone: str | None = None,
    day_or: bool = True,
    active: bool = True,
    parameters: dict[str, Any] | None = None,
    slug: str | None = None,
) -> Schedule:
    """A cron schedule, read in `timezone` (default UTC)."""
    if not day_or:
        raise InvalidSchedule(
            "schedule day_or=False: flowbus reads day-of-month and day-of-week as cron does "
            "(either matches); AND-ing them is not supported"
        )
    return parse_schedule({"cron": cron, **_common(timezone, active, parameters, slug)})


def Interval(
    interval: float | _dt.timedelta,
    anchor_date: _dt.datetime | None = None,
    timezone: str | None = None,
    active: bool = True,
    parameters: dict[str, Any] | None = None,
    slug: str | None = None,
) -> Schedule:
    """A run every `interval` (seconds or a timedelta), aligned on `anchor_date`."""
    seconds = interval.total_seconds() if isinstance(interval, _dt.timedelta) else interval
    fields = {"interval": seconds, **_common(timezone, active, parameters, slug)}
    if anchor_date is not None:
        fields["anchor_date"] = anchor_date
    return parse_schedule(fields)


def RRule(
    rrule: str,
    timezone: str | None = None,
    active: bool = True,
    parameters: dict[str, Any] | None = None,
    slug: str | None = None,
) -> Schedule:
    """An RFC 5545 recurrence rule schedule."""
    return parse_schedule({"rrule": rrule, **_common(timezone, active, parameters, slug)})


__all__ = ["Cron", "Interval", "RRule", "Schedule"]
