"""Drawing a flow's task graph without running its tasks (`Flow.visualize`,
`Flow.generate_mermaid_graph`).

The flow's body runs with every task call recorded instead of run: a call returns a
placeholder (or the task's ``viz_return_value``), and a call that receives an earlier
call's placeholder (or that value) depends on it. Code in the body that is not a task
does run, so a body that inspects a task's result needs a ``viz_return_value``.

Example::

    print(etl.generate_mermaid_graph())
    # flowchart TD
    #     extract_0["extract-0"]
    #     load_0["load-0"]
    #     extract_0 --> load_0
"""

from __future__ import annotations

import contextvars
from typing import Any

from flowbus.exceptions import FlowbusError


class FlowVisualizationError(FlowbusError):
    """The flow's graph could not be built or drawn."""


class GraphvizImportError(FlowVisualizationError, ImportError):
    """`Flow.visualize` needs the `graphviz` package (and Graphviz's `dot`)."""


class VizTask:
    """One recorded task call and the calls it depends on."""

    def __init__(self, name: str, upstream_tasks: list[VizTask]) -> None:
        self.name = name
        self.upstream_tasks = upstream_tasks

    def __repr__(self) -> str:
        return f"VizTask({self.name!r})"


class TaskVizTracker:
    """The task calls recorded while a flow body runs for visualisation."""

    def __init__(self) -> None:
        self.tasks: list[VizTask] = []
        self._counts: dict[str, int] = {}
        self._by_value: dict[int, VizTask] = {}
        self._keep: list[Any] = []  # keeps tracked values alive, so their ids stay unique

    def record(self, task_name: str, parameters: dict[str, Any], viz_return_value: Any) -> Any:
        upstream = [
            v if isinstance(v, VizTask) else self._by_value[id(v)]
            for v in parameters.values()
            if isinstance(v, VizTask) or id(v) in self._by_value
        ]
        count = self._counts[task_name] = self._counts.get(task_name, -1) + 1
        viz_task = VizTask(f"{task_name}-{count}", upstream)
        self.tasks.append(viz_task)
        if viz_return_value is None:
            return viz_task
        # Small ints, bools and None are shared objects: they cannot stand for one call.
        if not (viz_return_value is None or isinstance(viz_return_value, bool)
                or (isinstance(viz_return_value, int) and -5 <= viz_return_value <= 256)):  # fmt: skip
            self._by_value[id(viz_return_value)] = viz_task
            self._keep.append(viz_return_value)
        return viz_return_value

    def mermaid(self) -> str:
        lines = ["flowchart TD"]
        ids = {t.name: t.name.replace("-", "_").replace(" ", "_") for t in self.tasks}
        lines += [f'    {ids[t.name]}["{t.name}"]' for t in self.tasks]
        lines += [f"    {ids[u.name]} --> {ids[t.name]}" for t in self.tasks for u in t.upstream_tasks]
        return "\n".join(lines)


_tracker: contextvars.ContextVar[TaskVizTracker | None] = contextvars.ContextVar("flowbus_viz", default=None)


def current_tracker() -> TaskVizTracker | None:
    return _tracker.get()


async def _async_value(value: Any) -> Any:
    return value


def track_task_call(tracker: TaskVizTracker, task: Any, parameters: dict[str, Any]) -> Any:
    """What a task call gives while visualising (a coroutine for an async task)."""
    value = tracker.record(task.name, parameters, task.viz_return_value)
    return _async_value(value) if task.isasync else value


def trace_flow(flow: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> TaskVizTracker:
    """Run `flow`'s body with task calls recorded; the recorded calls."""
    import asyncio

    tracker = TaskVizTracker()
    token = _tracker.set(tracker)
    try:
        if flow.isasync:
            asyncio.run(flow.fn(*args, **kwargs))
        else:
            flow.fn(*args, **kwargs)
    except FlowVisualizationError:
        raise
    except Exception as exc:
        raise FlowVisualizationError(
            f"{type(exc).__name__}: {exc}\nThe flow's body may use a task's result directly; "
            "give that task a value to stand in for it: @task(viz_return_value=[1, 2, 3])."
        ) from exc
    finally:
        _tracker.reset(token)
    return tracker


async def atrace_flow(flow: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> TaskVizTracker:
    """`trace_flow` from async code (an async body runs in the calling loop)."""
    if not flow.isasync:
        return trace_flow(flow, args, kwargs)
    tracker = TaskVizTracker()
    token = _tracker.set(tracker)
    try:
        await flow.fn(*args, **kwargs)
    except Exception as exc:
        raise FlowVisualizationError(
            f"{type(exc).__name__}: {exc}\nThe flow's body may use a task's result directly; "
            "give that task a value to stand in for it: @task(viz_return_value=[1, 2, 3])."
        ) from exc
    finally:
        _tracker.reset(token)
    return tracker


def render_graphviz(tracker: TaskVizTracker, name: str) -> None:
    """Draw the graph as ``<name>.png`` with Graphviz and open it."""
    try:
        import graphviz  # type: ignore[import-not-found,unused-ignore]
    except ImportError as exc:
        raise GraphvizImportError(
            "Flow.visualize() needs the graphviz package and Graphviz's `dot` program: "
            "pip install graphviz, and install Graphviz from https://graphviz.org/download/ "
            "(or use flow.generate_mermaid_graph(), which needs neither)"
        ) from exc
    graph = graphviz.Digraph()
    for task in tracker.tasks:
        graph.node(task.name)
        for upstream in task.upstream_tasks:
            graph.edge(upstream.name, task.name)
    try:
        graph.render(filename=name, view=True, format="png", cleanup=True)
    except graphviz.backend.ExecutableNotFound as exc:
        raise FlowVisualizationError(
            "Graphviz's `dot` program is not installed or not on PATH; install Graphviz from "
            "https://graphviz.org/download/ (the graphviz Python package alone is not enough)"
        ) from exc


__all__ = [
    "FlowVisualizationError",
    "GraphvizImportError",
    "TaskVizTracker",
    "VizTask",
]
