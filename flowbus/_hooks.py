"""The state-hook lists of flows and tasks, usable as decorators as in Prefect::

    @task
    def load() -> int: ...

    @load.on_failure
    def alert(task, task_run, state) -> None: ...

``load.on_failure`` is the list of hooks (what the engine calls); calling it with a
function appends the function and returns it unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


class Hooks(list[Callable[..., Any]]):
    """A list of state hooks that is also a decorator adding one."""

    def __init__(self, hooks: Any = None, *, kind: str = "hook", owner: str = "flow") -> None:
        from flowbus._options_check import hook_list

        super().__init__(hook_list(hooks, kind, owner))  # a list of callables, as Prefect requires
        self.kind = kind

    def __call__(self, fn: F) -> F:
        if not callable(fn):
            raise TypeError(f"{self.kind} hooks must be callables, got {type(fn).__name__} {fn!r}")
        self.append(fn)
        return fn


def alias(name: str) -> property:
    """A read-only property ``<name>_hooks`` giving the hook list ``name`` (Prefect's attribute)."""
    return property(lambda self: getattr(self, name), doc=f"The ``{name}`` hooks (Prefect's name).")
