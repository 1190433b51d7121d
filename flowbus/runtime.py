"""What the current run is: `flow_run`, `task_run`, `deployment`.

Each attribute is None (or empty) outside a run, so code can use them anywhere::

    from flowbus.runtime import flow_run

    @flow(flow_run_name=lambda: f"report-{flow_run.parameters['day']}")
    def report(day: str): ...
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

from flowbus.context import FlowRun, TaskRun, _flow_run_ctx, _task_run_ctx


def _flow_run() -> FlowRun | None:
    ctx = _flow_run_ctx.get()
    return ctx.flow_run if ctx is not None else None


class _FlowRunView:
    """The current flow run (attributes are None outside one)."""

    @property
    def id(self) -> str | None:
        run = _flow_run()
        if run is None:
            task_ctx = _task_run_ctx.get()
            return task_ctx.task_run.flow_run_id if task_ctx else None
        return run.id

    @property
    def name(self) -> str | None:
        run = _flow_run()
        return run.name if run else None

    @property
    def flow_name(self) -> str | None:
        run = _flow_run()
        return run.flow_name if run else None

    @property
    def flow_version(self) -> str | None:
        """The running flow's ``version`` (None when it has none, or outside a flow run)."""
        ctx = _flow_run_ctx.get()
        if ctx is None:
            task_ctx = _task_run_ctx.get()
            ctx = task_ctx.flow_run_context if task_ctx is not None else None
        return getattr(ctx.flow, "version", None) if ctx is not None else None

    @property
    def parameters(self) -> dict[str, Any]:
        run = _flow_run()
        return dict(run.parameters) if run else {}

    @property
    def tags(self) -> list[str]:
        run = _flow_run()
        return list(run.tags) if run else []

    @property
    def scheduled_start_time(self) -> _dt.datetime | None:
        run = _flow_run()
        return run.scheduled_start_time if run else None

    @property
    def run_count(self) -> int:
        run = _flow_run()
        return run.run_count if run else 0

    @property
    def deployment_id(self) -> str | None:
        run = _flow_run()
        return run.deployment_id if run else None

    @property
    def parent_flow_run_id(self) -> str | None:
        run = _flow_run()
        return run.parent_flow_run_id if run else None


def _task_run() -> TaskRun | None:
    ctx = _task_run_ctx.get()
    return ctx.task_run if ctx is not None else None


class _TaskRunView:
    """The current task run (attributes are None outside one)."""

    @property
    def id(self) -> str | None:
        run = _task_run()
        return run.id if run else None

    @property
    def name(self) -> str | None:
        run = _task_run()
        return run.name if run else None

    @property
    def task_name(self) -> str | None:
        run = _task_run()
        return run.task_name if run else None

    @property
    def parameters(self) -> dict[str, Any]:
        run = _task_run()
        return dict(run.parameters) if run else {}

    @property
    def tags(self) -> list[str]:
        run = _task_run()
        return list(run.tags) if run else []

    @property
    def run_count(self) -> int:
        run = _task_run()
        return run.run_count if run else 0


class _DeploymentView:
    """The deployment the current flow run belongs to (None for a direct call)."""

    @property
    def id(self) -> str | None:
        run = _flow_run()
        return run.deployment_id if run else None

    @property
    def name(self) -> str | None:
        run = _flow_run()
        return run.deployment_name if run else None

    @property
    def parameters(self) -> dict[str, Any]:
        run = _flow_run()
        return dict(run.parameters) if run and run.deployment_id else {}


flow_run = _FlowRunView()
task_run = _TaskRunView()
deployment = _DeploymentView()

__all__ = ["deployment", "flow_run", "task_run"]
