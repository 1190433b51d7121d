"""The run contexts' result stores, a flow called inside a task, and `result_storage_key`
templates through the package's runtime, as in Prefect 3.8.8 (checked there first)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import flowbus.runtime
from flowbus import flow, task
from flowbus.context import FlowRunContext, get_run_context
from flowbus.exceptions import ParameterBindError
from flowbus.results import get_result_store


def _seen() -> tuple[Any, ...]:
    flow_ctx, run_ctx = FlowRunContext.get(), get_run_context()
    assert flow_ctx is not None
    return flow_ctx.flow.name, run_ctx.flow.name, flow_ctx.result_store.serializer.type  # type: ignore[union-attr]


def _where(store: Any) -> str:
    """The directory of a store's storage: a directory given as `result_storage` is
    resolved to a store of that directory, as Prefect resolves a storage option."""
    return str(store.result_storage.root)


def test_a_flow_called_in_a_task_runs_as_its_own_flow() -> None:
    @flow(result_serializer="json")
    def child_flow() -> tuple[Any, ...]:
        return _seen()

    @flow(result_serializer="pickle")
    def parent_flow() -> Any:
        return task(child_flow)()

    assert parent_flow() == ("child-flow", "child-flow", "json")


async def test_an_async_flow_called_in_a_task_runs_as_its_own_flow() -> None:
    @flow(result_serializer="json")
    async def child_flow() -> tuple[Any, ...]:
        return _seen()

    @flow(result_serializer="pickle")
    async def parent_flow() -> Any:
        return await task(child_flow)()

    assert await parent_flow() == ("child-flow", "child-flow", "json")


def test_a_task_made_from_a_flow_keeps_its_own_options() -> None:
    @flow(name="inner", retries=2)
    def inner() -> None: ...

    wrapped = task(inner, name="outer")  # type: ignore[call-overload]
    assert wrapped.fn is inner and wrapped.name == "outer" and wrapped.retries == 0


def test_run_contexts_give_the_runs_result_stores(tmp_path: Path) -> None:
    @task(result_serializer="pickle", result_storage=str(tmp_path / "task"))
    def inner() -> tuple[Any, ...]:
        store = get_run_context().result_store
        return store.serializer.type, _where(store), getattr(get_result_store().serializer, "type", None)

    @flow(result_storage=str(tmp_path / "flow"))
    def outer() -> tuple[Any, ...]:
        store = get_run_context().result_store
        return (store.serializer.type, _where(store), *inner())

    assert outer() == ("json", str(tmp_path / "flow"), "pickle", str(tmp_path / "task"), "pickle")


def test_storage_key_templates_reach_the_runtime_through_the_package(tmp_path: Path) -> None:
    @task(persist_result=True, result_storage=str(tmp_path),
          result_storage_key="{flowbus.runtime.flow_run.flow_version}-{prefect.runtime.task_run.task_name}")  # fmt: skip
    def some_task() -> str:
        return "hello"

    @flow(version="special")
    def some_flow() -> Any:
        some_task()
        return flowbus.runtime.flow_run.flow_version

    assert some_flow() == "special"
    assert (tmp_path / "special-some_task").is_file()
    assert flowbus.runtime.flow_run.flow_version is None, "outside a run"


async def test_storage_key_templates_in_async_runs(tmp_path: Path) -> None:
    @task(persist_result=True, result_storage=str(tmp_path), result_storage_key="{flowbus.runtime.flow_run.flow_version}")
    async def some_task() -> str:
        return "hello"

    @flow(version="v7")
    async def some_flow() -> None:
        await some_task()

    await some_flow()
    assert (tmp_path / "v7").is_file()


def test_a_storage_key_naming_what_the_runtime_lacks_is_refused(tmp_path: Path) -> None:
    @task(persist_result=True, result_storage=str(tmp_path), result_storage_key="{flowbus.runtime.nope}")
    def some_task() -> str:
        return "hello"

    @flow
    def some_flow() -> None:
        some_task()

    with pytest.raises(ParameterBindError, match="nope"):
        some_flow()
