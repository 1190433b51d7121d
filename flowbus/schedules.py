"""Schedule objects for `serve`, `to_deployment` and `deploy`, by Prefect's names.

Example::

    from datetime import timedelta
    from flowbus.schedules import Cron, Interval, RRule

    etl.serve("etl", schedules=[
        Cron("0 3 * * *", timezone="Europe/Berlin"),
        Interval(timedelta(hours=1), parameters={"full": False}),
        RRule("FREQ=WEEKLY;BYDAY=MO"),
    ])

Each returns a :class:`Schedule`, Prefect's frozen dataclass: at most one of
``interval``, ``cron`` and ``rrule``; a cron or rrule string, and a time zone, are
checked at once (a ``ValueError`` naming what was wrong). A deployment carries the
contract's schedule (:mod:`events.schedules`), made by :func:`to_contract` when the
deployment is built: there, a schedule with none of the three, ``day_or=False`` or a
``slug`` is refused, since flowbus does not run those.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from events.schedules import InvalidSchedule
from events.schedules import Schedule as ContractSchedule


class _DefaultAnchor(_dt.datetime):
    """The creation time filled in when no ``anchor_date`` is given: deployments
    leave it out, so an interval keeps one alignment across deploys."""

    def __repr__(self) -> str:
        return repr(_dt.datetime.fromtimestamp(self.timestamp(), self.tzinfo))


def _now_anchor() -> _dt.datetime:
    return _DefaultAnchor.now(tz=_dt.UTC)


@dataclasses.dataclass(frozen=True)
class Schedule:
    """One schedule: ``interval``, ``cron`` or ``rrule`` (at most one), read in
    ``timezone`` (None: UTC), with ``parameters`` for its runs."""

    interval: _dt.timedelta | None = None
    cron: str | None = None
    rrule: str | None = None
    timezone: str | None = None
    anchor_date: _dt.datetime = dataclasses.field(default_factory=_now_anchor)
    day_or: bool = True
    active: bool = True
    parameters: dict[str, Any] = dataclasses.field(default_factory=dict)
    slug: str | None = None

    def __post_init__(self) -> None:
        given = [name for name in ("interval", "cron", "rrule") if getattr(self, name) is not None]
        if len(given) > 1:
            raise InvalidSchedule(f"Only one schedule type can be defined at a time. Found: {', '.join(given)}")
        if self.cron is not None:
            from croniter import croniter

            if not isinstance(self.cron, str) or not croniter.is_valid(self.cron):
                raise InvalidSchedule(f'Invalid cron string: "{self.cron}"')
        if self.rrule is not None:
            from dateutil.rrule import rrulestr

            try:
                rrulestr(self.rrule, cache=True)
            except (ValueError, TypeError, AttributeError) as exc:
                raise InvalidSchedule(f'Invalid RRule string "{str(self.rrule)[:80]}": {exc}') from None
        if self.timezone is not None:
            try:
                ZoneInfo(self.timezone)
            except (ZoneInfoNotFoundError, ValueError, TypeError):
                raise InvalidSchedule(
                    f"time zone {self.timezone!r} is unknown; use an IANA name like 'Europe/Berlin'") from None

    def model_dump(self, mode: str = "json") -> dict[str, Any]:
        """The contract's form of this schedule (what a deployment stores)."""
        return to_contract(self).model_dump(mode=mode)


def to_contract(schedule: Schedule) -> ContractSchedule:
    """The deployment schedule of ``schedule``; :class:`InvalidSchedule` for what
    flowbus does not run (no kind, ``day_or=False``, a ``slug``)."""
    from events.schedules import parse_schedule

    if schedule.slug is not None:
        raise InvalidSchedule(f"schedule slug {schedule.slug!r}: flowbus schedules have no slug; leave it out")
    if not schedule.day_or:
        raise InvalidSchedule(
            "schedule day_or=False: flowbus reads day-of-month and day-of-week as cron does "
            "(either matches); AND-ing them is not supported"
        )
    fields: dict[str, Any] = {"active": schedule.active, "parameters": dict(schedule.parameters)}
    if schedule.timezone is not None:
        fields["timezone"] = schedule.timezone
    for name in ("interval", "cron", "rrule"):
        if getattr(schedule, name) is not None:
            fields[name] = getattr(schedule, name)
    if schedule.interval is not None and not isinstance(schedule.anchor_date, _DefaultAnchor):
        fields["anchor_date"] = schedule.anchor_date
    return parse_schedule(fields)


def as_deployment_schedule(value: Any) -> Any:
    """A :class:`Schedule` as the contract's dict; anything else unchanged."""
    return to_contract(value).model_dump(mode="json") if isinstance(value, Schedule) else value


def Cron(
    cron: str,
    /,
    timezone: str | None = None,
    day_or: bool = True,
    active: bool = True,
    parameters: dict[str, Any] | None = None,
    slug: str | None = None,
) -> Schedule:
    """A cron schedule, read in `timezone` (None: UTC)."""
    return Schedule(cron=cron, timezone=timezone, day_or=day_or, active=active,
                    parameters=dict(parameters or {}), slug=slug)  # fmt: skip


def Interval(
    interval: float | _dt.timedelta,
    /,
    anchor_date: _dt.datetime | None = None,
    timezone: str | None = None,
    active: bool = True,
    parameters: dict[str, Any] | None = None,
    slug: str | None = None,
) -> Schedule:
    """A run every `interval` (seconds or a timedelta), aligned on `anchor_date`."""
    if isinstance(interval, bool) or not isinstance(interval, int | float | _dt.timedelta):
        raise InvalidSchedule(f"interval must be seconds or a timedelta, got {interval!r}")
    every = interval if isinstance(interval, _dt.timedelta) else _dt.timedelta(seconds=interval)
    return Schedule(interval=every, anchor_date=anchor_date if anchor_date is not None else _now_anchor(),
                    timezone=timezone, active=active, parameters=dict(parameters or {}), slug=slug)  # fmt: skip


def RRule(
    rrule: str,
    /,
    timezone: str | None = None,
    active: bool = True,
    parameters: dict[str, Any] | None = None,
    slug: str | None = None,
) -> Schedule:
    """An RFC 5545 recurrence rule schedule."""
    return Schedule(rrule=rrule, timezone=timezone, active=active, parameters=dict(parameters or {}), slug=slug)


__all__ = ["Cron", "Interval", "RRule", "Schedule", "to_contract"]
