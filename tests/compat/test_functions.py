"""Flows and tasks as functions: signatures, methods, hooks, and the process pool."""

from __future__ import annotations

import inspect
import os
from typing import Any

from flowbus import flow, task
from flowbus.task_runners import ProcessPoolTaskRunner


def test_signature_is_the_functions() -> None:
    @task
    def t(x: int, y: str = "a") -> str:
        return y * x

    @flow
    async def f(day: str, *, n: int = 1) -> None:
        """Doc."""

    assert inspect.signature(t) == inspect.signature(t.fn)
    assert list(inspect.signature(f).parameters) == ["day", "n"]
    assert f.__name__ == "f" and f.__doc__ == "Doc."


class Pipeline:
    factor = 10

    def __init__(self, offset: int) -> None:
        self.offset = offset

    @task
    def add(self, x: int) -> int:
        return x + self.offset

    @flow
    def run(self, x: int) -> int:
        return self.add(x) * 2

    @classmethod
    @flow
    def scaled(cls, x: int) -> int:
        return cls.scale(x)

    @classmethod
    @task
    def scale(cls, x: int) -> int:
        return x * cls.factor

    @staticmethod
    @flow
    def plain(x: int) -> int:
        return Pipeline.twice(x)

    @staticmethod
    @task
    def twice(x: int) -> int:
        return 2 * x

    # The other order: the decorator receives the classmethod / staticmethod object.
    @task  # type: ignore[arg-type]
    @classmethod
    def scale2(cls, x: int) -> int:
        return x * cls.factor

    @flow  # type: ignore[arg-type]
    @staticmethod
    def plain2(x: int) -> int:
        return 3 * x


def test_instance_class_and_static_methods() -> None:
    p = Pipeline(1)
    assert p.run(3) == 8
    assert Pipeline.scaled(2) == 20 and p.scaled(2) == 20
    assert Pipeline.plain(4) == 8 and p.plain(4) == 8
    assert Pipeline.scale2(3) == 30 and p.scale2(3) == 30 and Pipeline.scale2.isclassmethod
    assert Pipeline.plain2(3) == 9 and p.plain2(3) == 9 and Pipeline.plain2.isstaticmethod
    assert Pipeline.scale2.with_options(name="s")(3) == 30


def test_methods_submit_and_map() -> None:
    p = Pipeline(5)

    @flow
    def f() -> list[int]:
        return [p.add.submit(1).result(), *p.add.map([1, 2]).result(), Pipeline.twice.submit(3).result()]

    assert f() == [6, 6, 7, 6]


def test_task_on_running_hooks_run_on_each_attempt() -> None:
    seen: list[str] = []
    attempts: list[int] = []

    def hook(tk: Any, task_run: Any, state: Any) -> None:
        seen.append(state.name)

    @task(retries=1, on_running=[hook])
    def flaky() -> int:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("first")
        return 1

    assert flaky() == 1
    assert seen == ["Running", "Retrying"]


async def test_async_task_on_running_hook() -> None:
    seen: list[str] = []

    @task(on_running=[lambda tk, tr, st: seen.append(tr.name)])
    async def t() -> int:
        return 2

    assert await t() == 2 and len(seen) == 1


def _set_marker(name: str, value: str) -> None:
    os.environ[name] = value


@task
def read_marker(name: str) -> str | None:
    return os.environ.get(name)


def test_process_pool_runs_its_initializer_in_each_worker() -> None:
    runner = ProcessPoolTaskRunner(max_workers=1, initializer=_set_marker, initargs=("FLOWBUS_COMPAT_MARK", "set"))

    @flow(task_runner=runner)
    def f() -> tuple[str | None, int]:
        return read_marker.submit("FLOWBUS_COMPAT_MARK").result(), os.getpid()

    value, parent = f()
    assert value == "set" and "FLOWBUS_COMPAT_MARK" not in os.environ and parent == os.getpid()


def test_process_pool_rejects_bad_options() -> None:
    import pytest

    with pytest.raises(ValueError, match="max_workers"):
        ProcessPoolTaskRunner(max_workers=0)
    with pytest.raises(TypeError, match="initializer"):
        ProcessPoolTaskRunner(initializer="nope")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="initargs"):
        ProcessPoolTaskRunner(initializer=print, initargs=["x"])  # type: ignore[arg-type]
