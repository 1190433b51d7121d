"""Prefect's task-runner interface on flowbus's runners.

The engine hands a runner prepared jobs; Prefect's users (and Prefect's own code
modelled on it) call a started runner with a task and its parameters::

    with ThreadPoolTaskRunner(max_workers=4) as runner:
        future = runner.submit(add, {"x": 1, "y": 2})
        futures = runner.map(add, {"x": [1, 2], "y": unmapped(10)})

This module turns those calls into jobs, and splits mapped parameters (also for
`Task.map`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flowbus.futures import FlowbusFuture
from flowbus.utilities.annotations import BaseAnnotation, unmapped


def _is_mappable(value: Any) -> bool:
    return isinstance(value, Iterable) and not isinstance(value, str | bytes | dict | FlowbusFuture)


def mapped_calls(task_name: str, parameters: dict[str, Any], resolve_futures: bool = False) -> list[dict[str, Any]]:
    """One parameter dict per mapped call: iterables are zipped (equal lengths), values
    in ``unmapped(...)`` and non-iterables go whole to every call. With
    ``resolve_futures``, a future given as a whole argument is waited for and its
    result mapped over (Prefect's runner ``map``)."""
    static: dict[str, Any] = {}
    iterables: dict[str, list[Any]] = {}
    for name, value in parameters.items():
        if resolve_futures and isinstance(value, FlowbusFuture):
            value = value.result()
        if isinstance(value, unmapped):
            static[name] = value.value
        elif isinstance(value, BaseAnnotation):  # allow_failure([...]): map inside, keep the mark
            inner = value.unwrap()
            if isinstance(inner, unmapped):
                static[name] = value.rewrap(inner.value)
            elif _is_mappable(inner):
                iterables[name] = [value.rewrap(v) for v in inner]
            else:
                static[name] = value
        elif _is_mappable(value):
            iterables[name] = list(value)
        else:
            static[name] = value
    if not iterables:
        raise ValueError(f"Task.map of {task_name!r} needs at least one iterable argument")
    lengths = {name: len(v) for name, v in iterables.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"Task.map of {task_name!r} got iterables of different lengths: {lengths}")
    count = next(iter(lengths.values()))
    return [{**static, **{n: v[i] for n, v in iterables.items()}} for i in range(count)]


def task_job(task: Any, parameters: dict[str, Any], wait_for: Any = None) -> Any:
    """The job of one run of `task` with `parameters` (bound by name, defaults filled)."""
    from flowbus._task_engine import TaskJob, new_task_run
    from flowbus.tasks import Task

    if not isinstance(task, Task):
        raise TypeError(f"a task runner runs tasks (made with @task), got {task!r}")
    if not isinstance(parameters, dict):
        raise TypeError(f"parameters must be a dict of the task's parameters by name, got {type(parameters).__name__}")
    bound = task._shape.bind((), dict(parameters))
    return TaskJob(task, new_task_run(task, bound), bound, list(wait_for) if wait_for else None)


__all__ = ["mapped_calls", "task_job"]
