"""A task's public `cache_policy` / `persist_result` read as Prefect 3.8.8's (checked
there first), and copies (`with_options`, `@materialize`) keep what the user gave."""

from __future__ import annotations

from typing import Any

import pytest

from flowbus import flow, task
from flowbus.assets import materialize
from flowbus.cache_policies import DEFAULT, INPUTS, NO_CACHE, CacheKeyFnPolicy


def _key(context: Any, parameters: dict[str, Any]) -> str:
    return "k"


@pytest.mark.parametrize(
    ("options", "cache_policy", "persist_result"),
    [
        ({}, DEFAULT, None),
        ({"cache_policy": INPUTS}, INPUTS, True),
        ({"persist_result": False}, NO_CACHE, False),
        ({"persist_result": False, "cache_policy": None}, None, False),
        ({"result_storage_key": "k"}, None, True),
        ({"result_serializer": "json"}, DEFAULT, True),
        ({"cache_policy": NO_CACHE}, NO_CACHE, None),
    ],
)
def test_option_attributes_read_as_prefects(options: dict[str, Any], cache_policy: Any, persist_result: Any) -> None:
    made = task(**options)(lambda: 1)
    assert made.cache_policy == cache_policy and made.persist_result == persist_result
    assert made._user_persist_result == options.get("persist_result")


def test_a_cache_key_fn_is_the_policy() -> None:
    made = task(cache_key_fn=_key)(lambda: 1)
    assert isinstance(made.cache_policy, CacheKeyFnPolicy) and made.persist_result is True


def test_materializing_task_copies_keep_what_the_user_gave() -> None:
    @materialize("storage://original/asset.csv")
    def initial() -> None: ...

    copy = initial.with_options(name="something")
    assert (copy.cache_policy, copy.persist_result, copy._user_persist_result) == (DEFAULT, None, None)
    chosen = initial.with_options(persist_result=True, cache_policy=INPUTS)
    assert (chosen.cache_policy, chosen.persist_result, chosen._user_persist_result) == (INPUTS, True, True)
    assert chosen.with_options(name="again").cache_policy == INPUTS


def test_a_default_task_still_runs_each_time() -> None:
    calls: list[int] = []

    @task
    def count(x: int) -> int:
        calls.append(x)
        return x

    @flow
    def twice() -> list[int]:
        return [count(1), count(1)]

    assert twice() == [1, 1] and calls == [1, 1], "DEFAULT as the attribute does not turn caching on"


async def test_a_default_async_task_still_runs_each_time() -> None:
    calls: list[int] = []

    @task
    async def count(x: int) -> int:
        calls.append(x)
        return x

    @flow
    async def twice() -> list[int]:
        return [await count(1), await count(1)]

    assert await twice() == [1, 1] and calls == [1, 1]
