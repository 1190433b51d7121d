"""`FlowRunContext.model_construct` / `TaskRunContext.model_construct`, as Prefect 3.8.8's
pydantic contexts: built from the given fields without checks (checked on Prefect first)."""

from __future__ import annotations

from typing import Any

import pytest

from flowbus import flow, task
from flowbus.cache_policies import TaskSource
from flowbus.context import FlowRunContext, TaskRunContext


class _Source:
    def __init__(self, source_code: str) -> None:
        self.source_code = source_code


def test_task_source_keys_of_constructed_contexts_follow_the_stored_source() -> None:
    keys = [
        TaskSource().compute_key(
            task_ctx=TaskRunContext.model_construct(task=_Source(code)), inputs=None, flow_parameters=None
        )
        for code in ("def a():\n    return 'a'", "def b():\n    return 'b'", "def a():\n    return 'a'")
    ]
    assert keys[0] is not None and keys[0] != keys[1] and keys[0] == keys[2]


def test_a_constructed_context_has_defaults_and_leaves_the_rest_unset() -> None:
    @task
    def double(x: int) -> int:
        return 2 * x

    context = TaskRunContext.model_construct(task=double, parameters={"x": 1})
    assert context.task is double and context.parameters == {"x": 1}
    assert context.flow_run_context is None
    with pytest.raises(AttributeError):
        _ = context.task_run
    flow_context = FlowRunContext.model_construct(parameters={})
    assert flow_context.dynamic_keys == {} and flow_context.observed_pauses == 0


def test_an_unknown_field_is_refused_naming_it() -> None:
    with pytest.raises(TypeError, match="tsk"):
        TaskRunContext.model_construct(tsk=1)


def test_constructed_contexts_are_not_the_current_ones() -> None:
    @flow
    def sync_flow() -> Any:
        TaskRunContext.model_construct(task=None)
        return FlowRunContext.get()

    assert TaskRunContext.get() is None and sync_flow() is not None


async def test_constructed_contexts_in_async_code() -> None:
    @task
    async def inner() -> Any:
        built = TaskRunContext.model_construct(task=_Source("x"))
        return TaskRunContext.get() is not built and built.task.source_code == "x"

    @flow
    async def async_flow() -> Any:
        return await inner()

    assert await async_flow() is True
