"""Cache keys, cache-policy constructors, result_storage_key templates, and the dual
sync/async calling convention of variables and artifacts, as in Prefect 3."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import BaseModel, model_serializer

from flowbus import flow, task
from flowbus.artifacts import Artifact, create_markdown_artifact
from flowbus.cache_policies import (
    FLOW_PARAMETERS,
    INPUTS,
    NONE,
    TASK_SOURCE,
    CacheKeyFnPolicy,
    CachePolicy,
    CompoundCachePolicy,
    FlowParameters,
    Inputs,
    RunId,
    TaskSource,
    hash_objects,
)
from flowbus.exceptions import ParameterBindError
from flowbus.variables import Variable


class Point(BaseModel):
    x: int
    y: int


class Tagged(BaseModel):
    value: int
    noise: int = 0

    @model_serializer
    def only_value(self) -> dict[str, Any]:
        return {"value": self.value}


def test_pydantic_models_hash_by_their_serialisation() -> None:
    assert hash_objects(Point(x=1, y=2)) == hash_objects(Point(x=1, y=2))
    assert hash_objects(Point(x=1, y=2)) != hash_objects(Point(x=2, y=1))
    # A custom serializer decides what counts: `noise` is not part of the key.
    assert hash_objects(Tagged(value=1, noise=5)) == hash_objects(Tagged(value=1, noise=9))


def test_a_task_caches_on_a_pydantic_input() -> None:
    calls: list[int] = []

    @task(cache_policy=INPUTS)
    def area(p: Point) -> int:
        calls.append(1)
        return p.x * p.y

    assert area(Point(x=2, y=3)) == 6 and area(Point(x=2, y=3)) == 6
    assert len(calls) == 1
    assert area(Point(x=3, y=3)) == 9 and len(calls) == 2


def test_cache_policy_constructors() -> None:
    calls: list[int] = []

    def by_x(context: Any, parameters: dict[str, Any]) -> str:
        return f"x={parameters['x']}"

    @task(cache_policy=CacheKeyFnPolicy(cache_key_fn=by_x))
    def t(x: int, y: int) -> int:
        calls.append(1)
        return x + y

    assert t(1, 1) == 2 and t(1, 5) == 2 and len(calls) == 1
    assert CachePolicy.from_cache_key_fn(by_x) == CacheKeyFnPolicy(cache_key_fn=by_x)
    assert Inputs(exclude=["a"]).exclude == ["a"]
    compound = CompoundCachePolicy(policies=[Inputs(), TaskSource(), FlowParameters(), RunId()])
    assert len(compound.policies) == 4
    assert INPUTS + NONE is INPUTS and NONE + INPUTS is INPUTS
    assert TASK_SOURCE - "x" is TASK_SOURCE  # subtracting from a policy without inputs: no-op
    with pytest.raises(TypeError, match="str"):
        INPUTS - 3  # type: ignore[operator]


def test_a_custom_policy_gets_prefects_arguments() -> None:
    seen: list[tuple[str, dict[str, Any]]] = []

    class ByFlowParameter(CachePolicy):
        def compute_key(
            self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any] | None = None, **kw: Any
        ) -> str | None:
            seen.append((task_ctx.task.name, dict(flow_parameters or {})))
            return str((flow_parameters or {}).get("day"))

    @task(cache_policy=ByFlowParameter() + FLOW_PARAMETERS)
    def t(x: int) -> int:
        return x

    @flow
    def f(day: str) -> int:
        return t(1)

    assert f("mon") == 1
    assert seen == [("t", {"day": "mon"})]


def test_result_storage_key_templates(flowbus_home: Any) -> None:
    @task(result_storage_key="out-{parameters[name]}-{task_run.task_name}")
    def t(name: str) -> str:
        return name.upper()

    @task(result_storage_key="flow-{flow_run.flow_name}-{name}")
    def u(name: str) -> str:
        return name

    @flow
    def f() -> tuple[str, str]:
        return t("a"), u("b")

    assert f() == ("A", "b")
    stored = {p.name for p in flowbus_home.rglob("*") if p.is_file()}
    assert "out-a-t" in stored and "flow-f-b" in stored

    @task(result_storage_key="{parameters[missing]}")
    def bad(name: str) -> str:
        return name

    state = bad("x", return_state=True)
    assert state.is_failed() and isinstance(state.data, ParameterBindError)
    assert "missing" in (state.message or "")


def test_variables_are_plain_in_sync_code_and_awaitable_in_async_code() -> None:
    Variable.set("threshold", 1)
    assert Variable.get("threshold") == 1

    async def main() -> Any:
        await Variable.set("threshold", 2, overwrite=True)
        value = await Variable.get("threshold")
        await Variable.unset("threshold")
        return value, await Variable.get("threshold", default="gone")

    assert asyncio.run(main()) == (2, "gone")

    @flow
    def sync_flow() -> Any:
        return Variable.get("other", default=3)

    @flow
    async def async_flow() -> Any:
        return await Variable.get("other", default=4)

    assert sync_flow() == 3 and asyncio.run(async_flow()) == 4


async def test_a_sync_task_in_async_code_gets_plain_calls() -> None:
    @task
    def read() -> Any:
        return Variable.get("nothing", default=5)

    @flow
    async def f() -> Any:
        return read()

    assert await f() == 5


def test_artifacts_are_plain_in_sync_code_and_awaitable_in_async_code() -> None:
    @flow
    def sync_flow() -> None:
        create_markdown_artifact("# one", key="report")

    sync_flow()
    artifact = Artifact.get("report")
    assert artifact is not None and artifact.data == "# one"

    @flow
    async def async_flow() -> Any:
        await create_markdown_artifact("# two", key="report")
        return await Artifact.get("report")

    assert asyncio.run(async_flow()).data == "# two"


def test_local_and_remote_file_systems_as_result_storage(tmp_path: Any) -> None:
    from flowbus.filesystems import LocalFileSystem, RemoteFileSystem

    local = LocalFileSystem(basepath=str(tmp_path / "results"))
    remote = RemoteFileSystem(basepath="memory://flowbus-compat-results")

    @task(result_storage=local, result_storage_key="local-{parameters[x]}")
    def to_local(x: int) -> int:
        return x + 1

    @task(result_storage=remote, result_storage_key="remote-{parameters[x]}")
    def to_remote(x: int) -> int:
        return x + 2

    assert to_local(1) == 2 and to_remote(1) == 3
    assert local.read_path("local-1") == b"2" and remote.read_path("remote-1") == b"3"
    assert local.read("missing") is None and remote.read("missing") is None
    remote.delete("remote-1")
    assert remote.read("remote-1") is None
    for bad in ("../escape", "/etc/passwd", ""):
        with pytest.raises(ValueError, match=r"relative path|outside the file system's basepath"):
            local.write_path(bad, b"x")
    from flowbus.exceptions import ConfigurationError

    with pytest.raises(ConfigurationError, match="scheme"):
        RemoteFileSystem(basepath="/no/scheme")
