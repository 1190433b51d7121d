"""Names Prefect users import: annotations, futures, schedules, top-level helpers."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest

import flowbus
from events.schedules import InvalidSchedule
from flowbus import allow_failure, flow, task, unmapped
from flowbus.exceptions import ConfigurationError
from flowbus.futures import (
    PrefectConcurrentFuture,
    PrefectFutureList,
    resolve_futures_to_results,
    resolve_futures_to_states,
)
from flowbus.schedules import Cron, Interval, RRule, Schedule
from flowbus.states import State
from flowbus.utilities.annotations import opaque, quote


@task
def boom() -> int:
    raise ValueError("upstream broke")


@task
def echo(x: Any) -> Any:
    return x


@task
def add(x: int, y: int) -> int:
    return x + y


@task
def total(xs: list[int]) -> int:
    return sum(xs)


def test_allow_failure_passes_the_upstream_exception_on() -> None:
    @flow
    def f() -> tuple[Any, str]:
        broken = boom.submit()
        got = echo.submit(allow_failure(broken)).result()
        cleanup = echo.submit("cleaned", wait_for=[allow_failure(broken)]).result()
        return got, cleanup

    got, cleanup = f()
    assert isinstance(got, ValueError) and str(got) == "upstream broke"
    assert cleanup == "cleaned"


def test_without_allow_failure_the_downstream_run_does_not_start() -> None:
    @flow
    def f() -> tuple[str, bool]:
        future = echo.submit(1, wait_for=[boom.submit()])
        future.wait()
        return future.state.name, future.state.is_failed()

    assert f() == ("NotReady", True)


def test_quote_passes_a_value_untouched_and_opaque_resolves_only_the_top() -> None:
    @flow
    def f() -> tuple[Any, Any]:
        inner = echo.submit(1)
        quoted = echo(quote([inner]))
        opaque_value = echo(opaque(echo.submit([2, 3])))
        return quoted[0] is inner, opaque_value

    kept_future, opaque_value = f()
    assert kept_future is True
    assert opaque_value == [2, 3]
    assert quote(1).unquote() == 1 and quote(1) == quote(1) and quote(1) != opaque(1)


def test_map_keeps_annotations_per_element() -> None:
    @flow
    def f() -> list[Any]:
        return echo.map(allow_failure([boom.submit(), 2])).result()

    first, second = f()
    assert isinstance(first, ValueError) and second == 2

    @flow
    def g() -> list[int]:
        return total.map(quote([[1], [2, 3]])).result() + add.map(allow_failure(unmapped(5)), [0, 1]).result()

    assert g() == [1, 5, 5, 6]


def test_a_flow_returning_a_quoted_state_is_not_aggregated() -> None:
    @flow
    def f() -> Any:
        return quote(echo(1, return_state=True))

    state = f(return_state=True)
    assert state.is_completed() and state.message is None
    assert isinstance(f().unquote(), State)


def test_future_names_and_resolvers() -> None:
    @flow
    def f() -> tuple[Any, Any, Any]:
        futures = echo.map([1, 2])
        assert isinstance(futures, PrefectFutureList) and isinstance(futures[0], PrefectConcurrentFuture)
        return (
            resolve_futures_to_states({"a": futures[0]})["a"],
            resolve_futures_to_results([futures[0], (futures[1], 3)]),
            resolve_futures_to_results(futures),
        )

    state, results, as_list = f()
    assert isinstance(state, State) and state.result() == 1
    assert results == [1, (2, 3)] and as_list == [1, 2]


def test_schedule_objects() -> None:
    cron = Cron("0 3 * * *", timezone="Europe/Berlin", parameters={"full": True})
    assert (cron.cron, cron.timezone, cron.parameters) == ("0 3 * * *", "Europe/Berlin", {"full": True})
    anchor = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    interval = Interval(dt.timedelta(minutes=5), anchor_date=anchor)
    assert interval.interval == dt.timedelta(minutes=5) and Interval(30).interval == dt.timedelta(seconds=30)
    assert RRule("FREQ=DAILY").rrule == "FREQ=DAILY"
    with pytest.raises(InvalidSchedule, match='Invalid cron string: "nope"'):
        Cron("nope")
    with pytest.raises(InvalidSchedule, match="time zone"):
        Cron("* * * * *", timezone="Mars/Base")
    # as in Prefect, these build; flowbus refuses them when a deployment is made
    assert Cron("* * * * *", day_or=False).day_or is False
    assert RRule("FREQ=DAILY", slug="daily").slug == "daily"


def test_schedule_objects_are_accepted_by_to_deployment() -> None:
    @flow
    def etl() -> None: ...

    deployment = etl.to_deployment("etl", schedules=[Cron("0 3 * * *"), Interval(60), RRule("FREQ=DAILY")])
    assert [bool(s["cron"]) for s in deployment.schedules] == [True, False, False]
    assert deployment.schedules[1]["interval"] in (60, 60.0, "PT1M")
    assert deployment.schedules[1]["anchor_date"] is None  # the filled-in creation time is left out
    anchor = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    anchored = etl.to_deployment("etl", schedules=[Interval(60, anchor_date=anchor)])
    assert anchored.schedules[0]["anchor_date"].startswith("2026-01-01")
    for refused, what in [(Cron("* * * * *", day_or=False), "day_or"), (RRule("FREQ=DAILY", slug="d"), "slug"),
                          (Schedule(), "exactly one of cron, interval or rrule")]:  # fmt: skip
        with pytest.raises(ConfigurationError, match=what):
            etl.to_deployment("etl", schedules=[refused])


def test_top_level_names() -> None:
    from flowbus.client import get_client

    assert flowbus.get_client is get_client
    with pytest.raises(ConfigurationError, match="at least one deployment"):
        flowbus.deploy()
    with pytest.raises(ConfigurationError, match="at least one deployment"):
        asyncio.run(flowbus.aserve())


def test_the_test_harness_uses_throw_away_state(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    import os

    from flowbus import _sink
    from flowbus.testing.utilities import flowbus_test_harness, prefect_test_harness
    from flowbus.variables import Variable

    events = tmp_path / "events.jsonl"
    monkeypatch.setenv("FLOWBUS_EVENTS_FILE", str(events))
    monkeypatch.setenv("FLOWBUS_NATS_URL", "nats://127.0.0.1:1")  # must not be used
    outside_home = os.environ["FLOWBUS_HOME"]
    assert flowbus_test_harness is prefect_test_harness
    with prefect_test_harness():
        inside_home = os.environ["FLOWBUS_HOME"]
        assert inside_home != outside_home and "FLOWBUS_NATS_URL" not in os.environ
        Variable.set("inside", 1)
        assert echo(3) == 3
    assert not os.path.exists(inside_home) and not events.exists()
    assert os.environ["FLOWBUS_NATS_URL"] == "nats://127.0.0.1:1" and os.environ["FLOWBUS_HOME"] == outside_home
    monkeypatch.delenv("FLOWBUS_NATS_URL")  # outside, state is local again: the variable stayed inside
    assert Variable.get("inside") is None
    assert not _sink.enabled
