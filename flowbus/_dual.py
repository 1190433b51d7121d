"""Functions callable plainly from sync code and awaitable from async code.

Prefect's rule, kept here: a call made inside an async flow or task run, or (outside
any run) on a thread with a running event loop, gets a coroutine; inside a sync run,
or with no loop, it runs at once. ``_sync=True`` / ``_sync=False`` forces either way.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def is_in_async_context() -> bool:
    """Whether a dual function called here should return a coroutine."""
    from flowbus.context import _flow_run_ctx, _task_run_ctx

    task_ctx = _task_run_ctx.get()
    if task_ctx is not None:
        return bool(task_ctx.task.isasync)
    flow_ctx = _flow_run_ctx.get()
    if flow_ctx is not None:
        return bool(flow_ctx.flow.isasync)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def dual(async_impl: Callable[..., Awaitable[Any]]) -> Callable[[F], F]:
    """Make the decorated sync function dispatch to `async_impl` in async contexts.

    Example::

        async def aget(name): ...

        @dual(aget)
        def get(name): ...
    """

    def decorate(sync_fn: F) -> F:
        @functools.wraps(sync_fn)
        def dispatch(*args: Any, **kwargs: Any) -> Any:
            forced = kwargs.pop("_sync", None)
            run_sync = bool(forced) if forced is not None else not is_in_async_context()
            return (sync_fn if run_sync else async_impl)(*args, **kwargs)

        dispatch.aio = async_impl  # type: ignore[attr-defined]
        return dispatch  # type: ignore[return-value]

    return decorate


def dual_classmethod(async_name: str) -> Callable[[Callable[..., Any]], Any]:
    """`dual` for classmethods: ``@dual_classmethod("aget")`` on the sync method names
    the async classmethod defined on the same class."""

    def decorate(fn: Callable[..., Any]) -> _DualClassMethod:
        return _DualClassMethod(fn, async_name)

    return decorate


class _DualClassMethod:
    def __init__(self, fn: Callable[..., Any], async_name: str) -> None:
        self.fn = fn
        self.async_name = async_name
        self.__doc__ = fn.__doc__

    def __get__(self, instance: Any, owner: type) -> Callable[..., Any]:
        sync_fn = self.fn.__get__(owner, owner)
        async_fn = getattr(owner, self.async_name)

        @functools.wraps(self.fn)
        def dispatch(*args: Any, **kwargs: Any) -> Any:
            forced = kwargs.pop("_sync", None)
            run_sync = bool(forced) if forced is not None else not is_in_async_context()
            return (sync_fn if run_sync else async_fn)(*args, **kwargs)

        dispatch.aio = async_fn  # type: ignore[attr-defined]
        return dispatch
