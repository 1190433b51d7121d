"""Where the task engine meets assets, kept free of pydantic so ``import flowbus`` stays light.

A task run with no assets, in a flow run that has seen none, costs a few attribute
checks here; the rest (`flowbus.assets._context`) loads only once assets are in play.
"""

from __future__ import annotations

import contextvars
import logging
from typing import Any

#: The running task's `flowbus.assets._context.AssetContext` (None outside one).
current: contextvars.ContextVar[Any] = contextvars.ContextVar("flowbus_asset_context", default=None)
#: In a task runner's worker process: the upstream assets the flow's process found.
inherited: contextvars.ContextVar[Any] = contextvars.ContextVar("flowbus_asset_upstream", default=None)


def _untracked(task: Any, flow_ctx: Any) -> bool:
    return (not getattr(task, "asset_deps", None) and getattr(task, "assets", None) is None
            and (flow_ctx is None or flow_ctx.asset_tracking is None))


def enter(task: Any, task_run: Any, wait_for: Any, flow_ctx: Any) -> tuple[Any, Any]:
    """The asset context of a starting task run, made current, and the token to reset it."""
    if _untracked(task, flow_ctx) and inherited.get() is None:
        # Nothing to track; a task called inside a materialising task must not see its context.
        return None, (current.set(None) if current.get() is not None else None)
    from flowbus.assets._context import enter_run

    return enter_run(task, task_run, wait_for, flow_ctx)


def for_process(task: Any, task_run: Any, wait_for: Any, flow_ctx: Any) -> Any:
    """Before a task run leaves for a worker process: its upstream assets (to send along),
    tracked here so later task runs of the flow find them through its future."""
    if _untracked(task, flow_ctx):
        return None
    from flowbus.assets._context import prepare_remote_run

    return prepare_remote_run(task, task_run, wait_for, flow_ctx)


def finish(context: Any, token: Any, task_run: Any, state: Any, flow_ctx: Any) -> None:
    """Publish the run's asset events and make the enclosing context current again."""
    try:
        if context is not None:
            from flowbus.assets._context import finish_run

            finish_run(context, task_run, state, flow_ctx)
    except Exception as exc:  # like a hook: reporting assets never changes the run's state
        logging.getLogger("flowbus.assets").error(
            "Could not publish the asset events of task run %s: %r", task_run.id, exc)
    finally:
        if token is not None:
            current.reset(token)
