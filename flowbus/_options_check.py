"""Checks of the options ``@flow`` and ``@task`` take, with Prefect 3's errors.

A bad option is refused when the flow or task is made (or re-made by
``with_options``), not when it runs:

- a flow's ``name`` must be a string without ``/ % & > <`` (`InvalidNameError`);
  a lambda's flow is named ``unknown-lambda``;
- ``flow_run_name`` / ``task_run_name`` must be a string or a callable;
- hook options (``on_completion=`` ...) take a list of callables;
- the function may not have a ``return_state`` or ``wait_for`` parameter (the call
  options of the same names) (`ReservedArgumentError`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from flowbus.exceptions import InvalidNameError, ReservedArgumentError

BANNED_CHARACTERS = ["/", "%", "&", ">", "<"]
RESERVED_ARGUMENTS = ("return_state", "wait_for")


def flow_name(name: Any, fn: Callable[..., Any]) -> str:
    """The flow's name: ``name``, else the function's with ``_`` as ``-``."""
    if name is not None and not isinstance(name, str):
        hint = " Perhaps you meant to call it? e.g. '@flow(name=get_flow_run_name())'" if callable(name) else ""
        raise TypeError(f"Expected string for flow parameter 'name'; got {type(name).__name__} instead.{hint}")
    chosen = name or getattr(fn, "__name__", type(fn).__name__).replace("_", "-").replace("<lambda>", "unknown-lambda")
    check_name(chosen)
    return chosen


def check_name(name: str) -> None:
    """Refuse a name with one of `BANNED_CHARACTERS` (flow and deployment names)."""
    if any(c in name for c in BANNED_CHARACTERS):
        raise InvalidNameError(f"Name {name!r} contains an invalid character. Must not contain any of: "
                               f"{BANNED_CHARACTERS}.")  # fmt: skip


def run_name(value: Any, option: str) -> Any:
    """``flow_run_name`` / ``task_run_name``: None, a template string or a callable."""
    if value is not None and not isinstance(value, str) and not callable(value):
        raise TypeError(f"Expected string or callable for {option!r}; got {type(value).__name__} instead.")
    return value


def hook_list(hooks: Any, option: str, owner: str) -> list[Callable[..., Any]]:
    """A hook option as a list, refusing a lone function or a non-callable item."""
    if hooks is None:
        return []
    example = f"@{owner}({option}=[hook1, hook2])\ndef my_{owner}():\n\tpass"
    try:
        items = list(hooks)
    except TypeError:
        raise TypeError(f"Expected iterable for {option!r}; got {type(hooks).__name__} instead. Please "
                        f"provide a list of hooks to {option!r}:\n\n{example}") from None  # fmt: skip
    for hook in items:
        if not callable(hook):
            raise TypeError(f"Expected callables in {option!r}; got {type(hook).__name__} instead. Please "
                            f"provide a list of hooks to {option!r}:\n\n{example}")  # fmt: skip
    return items


def check_reserved_arguments(fn: Callable[..., Any]) -> None:
    """Refuse a function with a parameter named like a call option."""
    try:
        parameters = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # no signature to read (some builtins)
        return
    for argument in RESERVED_ARGUMENTS:
        if argument in parameters:
            raise ReservedArgumentError(f"{argument!r} is a reserved argument name and cannot be used.")
