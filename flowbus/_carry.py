"""`with_context`: run a function in the run context of the code that wrapped it
(Prefect's ``prefect.context.with_context``).

In a thread of the same process the wrapped function runs in a copy of the wrapping
code's context (run, tags, transaction). Sent to another process (a process pool,
``multiprocessing``), it carries the flow run and task run records, so
``get_run_logger()`` there logs for the same runs; the rest of the context (the flow
and task objects, tags, transaction) stays behind.
"""

from __future__ import annotations

import contextvars
import dataclasses
import functools
from typing import Any


class ContextCarrier:
    """A callable wrapper made by :func:`with_context`."""

    def __init__(self, fn: Any) -> None:
        if not callable(fn):
            raise TypeError(f"with_context needs a callable, got {fn!r}")
        functools.update_wrapper(self, fn)
        self.fn = fn
        self._context: contextvars.Context | None = contextvars.copy_context()
        self._runs = _run_records()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._context is not None:
            return self._context.copy().run(self.fn, *args, **kwargs)
        return contextvars.copy_context().run(self._in_other_process, args, kwargs)

    def _in_other_process(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        from flowbus import _sink
        from flowbus.context import FlowRunContext, TaskRunContext, _flow_run_ctx, _task_run_ctx
        from flowbus.logging import setup_logging

        setup_logging()
        _sink.configure_from_env()
        flow_run, task_run = self._runs
        flow_ctx = FlowRunContext(None, flow_run, None, {}, False) if flow_run is not None else None
        _flow_run_ctx.set(flow_ctx)
        if task_run is not None:
            _task_run_ctx.set(TaskRunContext(None, task_run, {}, False, flow_ctx))
        try:
            return self.fn(*args, **kwargs)
        finally:
            _sink.flush_event_sink()

    def __getstate__(self) -> dict[str, Any]:
        return {"fn": self.fn, "_runs": self._runs}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.fn = state["fn"]
        self._runs = state["_runs"]
        self._context = None
        functools.update_wrapper(self, self.fn)


def _run_records() -> tuple[Any, Any]:
    """The current flow run and task run, stripped of what may not pickle."""
    from flowbus.context import _flow_run_ctx, _task_run_ctx

    flow_ctx, task_ctx = _flow_run_ctx.get(), _task_run_ctx.get()
    flow_run = dataclasses.replace(flow_ctx.flow_run, parameters={}, returned=None) if flow_ctx else None
    task_run = dataclasses.replace(task_ctx.task_run, parameters={}, returned=None) if task_ctx else None
    return flow_run, task_run


def with_context(fn: Any) -> ContextCarrier:
    """``fn`` wrapped to run in the current run context, here or in another process.

    Example::

        @task
        def parallel(items: list[int]) -> list[int]:
            with concurrent.futures.ThreadPoolExecutor() as pool:
                return list(pool.map(with_context(process_item), items))
    """
    return ContextCarrier(fn)
