"""Plain (never awaitable) forms of the state helpers, by Prefect's private path.

Prefect keeps sync twins of its async state helpers in ``prefect._internal.states``;
flowbus's helpers in `flowbus.states` already work in sync code, and these are the
same helpers that never return an awaitable, even inside a running event loop.
"""

from __future__ import annotations

from typing import Any

from flowbus._state_rules import _crashed_state, _failed_state
from flowbus._state_rules import return_value_to_state as _return_value_to_state
from flowbus.states import State


def exception_to_failed_state_sync(exc: BaseException | None = None, **kwargs: Any) -> State[Any]:
    """A Failed state for `exc` (default: the exception being handled)."""
    message = kwargs.pop("message", "")
    return _failed_state(exc, message, **kwargs)


def exception_to_crashed_state_sync(exc: BaseException) -> State[Any]:
    """A Crashed state for an exception raised outside user code (a signal, an exit)."""
    return _crashed_state(exc)


def return_value_to_state_sync(retval: Any) -> State[Any]:
    """The state a run ends in given what its body returned (`flowbus.states.return_value_to_state`)."""
    return _return_value_to_state(retval)


__all__ = ["exception_to_crashed_state_sync", "exception_to_failed_state_sync", "return_value_to_state_sync"]
