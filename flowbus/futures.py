"""Futures: handles on task runs submitted to a task runner.

Example::

    from flowbus.futures import as_completed, wait

    futures = [double.submit(i) for i in range(3)]
    for future in as_completed(futures):
        print(future.result())
"""

from __future__ import annotations

import concurrent.futures as cf
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, NamedTuple, TypeVar

from flowbus.states import State
from flowbus.utilities.annotations import BaseAnnotation

R = TypeVar("R")


class FlowbusFuture(Generic[R]):
    """The eventual final `State` of a submitted task run."""

    __slots__ = ("_future", "task_run")

    def __init__(self, future: cf.Future[State[R]], task_run: Any) -> None:
        self._future = future
        self.task_run = task_run

    @property
    def task_run_id(self) -> uuid.UUID:
        """The task run's id (a UUID, as Prefect's)."""
        run_id = self.task_run.id
        return run_id if isinstance(run_id, uuid.UUID) else uuid.UUID(str(run_id))

    @property
    def wrapped_future(self) -> cf.Future[State[R]]:
        """The `concurrent.futures.Future` this future wraps."""
        return self._future

    @property
    def state(self) -> State[R]:
        """The final state once done; the run's current state before that."""
        if self._future.done() and self._future.exception() is None:
            return self._future.result()
        return self.task_run.state  # type: ignore[no-any-return]

    def done(self) -> bool:
        return self._future.done()

    def wait(self, timeout: float | None = None) -> None:
        """Wait until the run is final (or `timeout` seconds have passed)."""
        cf.wait([self._future], timeout=timeout)

    def final_state(self, timeout: float | None = None) -> State[R]:
        try:
            return self._future.result(timeout)
        except cf.TimeoutError:
            raise TimeoutError(
                f"Task run {self.task_run.name!r} did not finish within {timeout} seconds"
            ) from None

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> R:
        """Wait for the run and return its result; raise its error if it failed."""
        return self.final_state(timeout).result(raise_on_failure=raise_on_failure, _sync=True)

    def add_done_callback(self, fn: Callable[[FlowbusFuture[R]], None]) -> None:
        self._future.add_done_callback(lambda _: fn(self))

    def __repr__(self) -> str:
        return f"FlowbusFuture(task_run={self.task_run.name!r}, state={self.state!r})"


F = TypeVar("F")


class _RunRef:
    """The task run a `PrefectWrappedFuture` names: its id only."""

    __slots__ = ("id", "name", "state")

    def __init__(self, run_id: uuid.UUID) -> None:
        self.id = run_id
        self.name = str(run_id)
        self.state: Any = None


class PrefectWrappedFuture(FlowbusFuture[R], Generic[R, F]):
    """Prefect's base class of futures that wrap another future: made from a task run
    id and the wrapped future; a subclass gives ``wait``, ``result`` and ``state``.

    Example::

        class Ready(PrefectWrappedFuture[int, cf.Future[int]]):
            def wait(self, timeout=None): ...
            def result(self, timeout=None, raise_on_failure=True): return 42
            @property
            def state(self): return Completed(data=42)
    """

    def __init__(self, task_run_id: uuid.UUID, wrapped_future: F) -> None:
        super().__init__(wrapped_future, _RunRef(task_run_id))  # type: ignore[arg-type]


class FutureList(list[FlowbusFuture[R]]):
    """What `Task.map` returns: a list of futures that can also be waited on as one."""

    def wait(self, timeout: float | None = None) -> None:
        wait(self, timeout=timeout)

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> list[R]:
        return [f.result(timeout, raise_on_failure) for f in self]


class DoneAndNotDoneFutures(NamedTuple, Generic[R]):
    done: set[FlowbusFuture[R]]
    not_done: set[FlowbusFuture[R]]


def wait(futures: Iterable[FlowbusFuture[R]], timeout: float | None = None) -> DoneAndNotDoneFutures[R]:
    """Wait for all `futures` (or `timeout` seconds); returns the done and not-done sets."""
    by_inner = {f._future: f for f in futures}
    done, not_done = cf.wait(by_inner, timeout=timeout)
    return DoneAndNotDoneFutures({by_inner[f] for f in done}, {by_inner[f] for f in not_done})


def as_completed(futures: Iterable[FlowbusFuture[R]], timeout: float | None = None) -> Iterator[FlowbusFuture[R]]:
    """Yield `futures` as their runs finish."""
    by_inner = {f._future: f for f in futures}
    for inner in cf.as_completed(by_inner, timeout=timeout):
        yield by_inner[inner]


def contains_upstream(value: Any, depth: int = 0) -> bool:
    """Whether `value` is, or holds within three levels of collections, a future or a state."""
    if isinstance(value, FlowbusFuture | State):
        return True
    if depth < 3:
        if isinstance(value, list | tuple | set | frozenset):
            return any(contains_upstream(v, depth + 1) for v in value)
        if isinstance(value, dict):
            return any(contains_upstream(v, depth + 1) for v in value.values())
    return False


def rebuild(value: Any, items: Iterable[Any]) -> Any:
    """A collection like `value` holding `items` (keeps named tuples and subclasses)."""
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return type(value)(*items)
    return type(value)(items)


def resolve_futures_to_states(value: Any) -> Any:
    """`value` with every future replaced by its final state; untouched if it holds none."""
    if isinstance(value, FlowbusFuture):
        return value.final_state()
    if not contains_upstream(value) or isinstance(value, BaseAnnotation):  # quote(...) stays as is
        return value
    if isinstance(value, FutureList):  # once resolved it holds states, not futures
        return [resolve_futures_to_states(v) for v in value]
    if isinstance(value, list | tuple | set | frozenset):
        return rebuild(value, [resolve_futures_to_states(v) for v in value])
    if isinstance(value, dict):
        return {k: resolve_futures_to_states(v) for k, v in value.items()}
    return value


def resolve_futures_to_results(value: Any) -> Any:
    """`value` with every future (and state) replaced by its result; raises for a failed one."""
    resolved = resolve_futures_to_states(value)
    if isinstance(resolved, State):
        return resolved.result(_sync=True)
    if isinstance(resolved, BaseAnnotation) or not contains_upstream(resolved):
        return resolved
    if isinstance(resolved, list | tuple | set | frozenset):
        return rebuild(resolved, [resolve_futures_to_results(v) for v in resolved])
    if isinstance(resolved, dict):
        return {k: resolve_futures_to_results(v) for k, v in resolved.items()}
    return resolved


# Prefect's names. flowbus has one future class for thread- and process-pool runs.
PrefectFuture = FlowbusFuture
PrefectConcurrentFuture = FlowbusFuture
PrefectDistributedFuture = FlowbusFuture
PrefectFutureList = FutureList

__all__ = [
    "FlowbusFuture",
    "FutureList",
    "PrefectConcurrentFuture",
    "PrefectDistributedFuture",
    "PrefectFuture",
    "PrefectFutureList",
    "PrefectWrappedFuture",
    "as_completed",
    "resolve_futures_to_results",
    "resolve_futures_to_states",
    "wait",
]
