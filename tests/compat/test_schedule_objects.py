"""``flowbus.schedules`` objects as Prefect 3.8.8's (each expectation observed on Prefect
first), and what a deployment makes of them."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from flowbus.schedules import Cron, Interval, RRule, Schedule, to_contract


def test_a_schedule_is_a_frozen_dataclass_with_prefects_defaults() -> None:
    schedule = Schedule()
    assert (schedule.interval, schedule.cron, schedule.rrule, schedule.timezone) == (None, None, None, None)
    assert isinstance(schedule.anchor_date, dt.datetime) and schedule.anchor_date.tzinfo is not None
    assert (schedule.day_or, schedule.active, schedule.parameters, schedule.slug) == (True, True, {}, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        schedule.cron = "* * * * *"  # type: ignore[misc]


@pytest.mark.parametrize("kwargs, message", [
    ({"interval": dt.timedelta(days=1), "cron": "0 0 * * *"}, "Only one schedule type can be defined at a time. Found: interval, cron"),
    ({"cron": "0 0 * * *", "rrule": "RRULE:FREQ=DAILY"}, "Only one schedule type can be defined"),
    ({"cron": "invalid"}, 'Invalid cron string: "invalid"'),
    ({"rrule": "invalid"}, 'Invalid RRule string "invalid"'),
    ({"cron": "0 0 * * *", "timezone": "Nowhere/Atlantis"}, "time zone 'Nowhere/Atlantis' is unknown"),
])  # fmt: skip
def test_bad_schedules_are_named(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Schedule(**kwargs)  # type: ignore[arg-type]


def test_constructors() -> None:
    cron = Cron("0 0 * * *", timezone="America/New_York", day_or=False, active=False, parameters={"k": "v"})
    assert (cron.cron, cron.timezone, cron.day_or, cron.active, cron.parameters) == (
        "0 0 * * *", "America/New_York", False, False, {"k": "v"})  # fmt: skip
    assert Interval(3600).interval == dt.timedelta(seconds=3600)
    assert Interval(1.5).interval == dt.timedelta(seconds=1.5)
    anchor = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    assert Interval(dt.timedelta(hours=1), anchor_date=anchor, timezone="UTC").anchor_date == anchor
    rrule = RRule("RRULE:FREQ=WEEKLY;BYDAY=MO,WE,FR", timezone="Europe/London", parameters={"k": 1})
    assert (rrule.rrule, rrule.timezone, rrule.parameters, rrule.timezone) == (
        "RRULE:FREQ=WEEKLY;BYDAY=MO,WE,FR", "Europe/London", {"k": 1}, "Europe/London")  # fmt: skip
    with pytest.raises(ValueError, match="interval must be seconds or a timedelta"):
        Interval("hourly")  # type: ignore[arg-type]


def test_the_deployment_form() -> None:
    contract = to_contract(Cron("0 3 * * *"))
    assert (contract.cron, contract.timezone) == ("0 3 * * *", "UTC")
    assert to_contract(Interval(60)).anchor_date is None
    anchor = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    assert to_contract(Interval(60, anchor_date=anchor)).anchor_date == anchor
    assert Cron("0 3 * * *", parameters={"a": 1}).model_dump()["parameters"] == {"a": 1}
    with pytest.raises(ValueError, match=r"interval 0:00:00\.500000 is below the minimum"):
        to_contract(Interval(0.5))
