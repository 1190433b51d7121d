"""Plain (never awaitable) forms of the state helpers, by Prefect's private path.

Prefect keeps sync twins of its async state helpers in ``prefect._internal.states``;
these are flowbus's helpers that never return an awaitable, even inside a running
event loop.
"""

from __future__ import annotations

from typing import Any

from flowbus._state_records import return_value_to_state_sync
from flowbus._state_rules import _crashed_state, failed_state_with_store
from flowbus.states import State


def exception_to_failed_state_sync(
    exc: BaseException | None = None, result_store: Any = None, write_result: bool = False, **kwargs: Any
) -> State[Any]:
    """A Failed state for `exc` (default: the exception being handled); with a
    ``result_store`` its data is a record of the exception, written when
    ``write_result`` is true (`flowbus.states.exception_to_failed_state`)."""
    return failed_state_with_store(exc, result_store, write_result, **kwargs)


def exception_to_crashed_state_sync(exc: BaseException, result_store: Any = None) -> State[Any]:
    """A Crashed state for an exception raised outside user code (a signal, an exit)."""
    return _crashed_state(exc, result_store)


__all__ = ["exception_to_crashed_state_sync", "exception_to_failed_state_sync", "return_value_to_state_sync"]
