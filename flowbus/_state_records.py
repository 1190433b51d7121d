"""Prefect's `return_value_to_state` with result records, async and sync.

Given what a flow or task body returned and a `ResultStore`, these give the state the
run should end in, the value wrapped in a result record made by
``result_store.create_result_record`` (written when ``write_result`` is true; a failed
write is logged and the run goes on):

- a state built by the caller (no run ids in its ``state_details``) is returned as
  is, its data replaced by a record of it unless it already is a record or a record's
  metadata;
- another run's state, or a non-empty list/set/tuple of states only, gives the
  aggregate state (see `flowbus._state_rules.aggregate_state_type`) with a record of
  the returned value;
- a result record is returned in a Completed state as it is;
- a generator is consumed into a list; anything else gives a Completed state with a
  record of the value.

flowbus's engine decides its runs' states with the same rule but keeps the value in
the state (`flowbus._state_rules.state_for_return_value`).

`to_state_create` is Prefect's payload of a state for its API, the value left out.
"""

from __future__ import annotations

import datetime as _dt
from types import GeneratorType
from typing import Any

from flowbus._state_rules import (
    _apersist_or_warn,
    _is_run_state,
    _persist_or_warn,
    aggregate_state_type,
)
from flowbus.states import Completed, State


def _decide(
    retval: Any, result_store: Any, key: str | None, expiration: _dt.datetime | None
) -> tuple[State[Any], Any]:
    """The state and the record to write (None: nothing to write)."""
    from flowbus._result_records import ResultRecord, ResultRecordMetadata

    if isinstance(retval, State) and not _is_run_state(retval):
        if isinstance(retval.data, ResultRecord | ResultRecordMetadata):
            return retval, None
        record = result_store.create_result_record(retval.data, key=key, expiration=expiration)
        retval.data = record
        return retval, record
    aggregate = aggregate_state_type(retval)
    if aggregate is not None:
        record = result_store.create_result_record(retval, key=key, expiration=expiration)
        return State(aggregate[0], message=aggregate[1], data=record), record
    data = list(retval) if isinstance(retval, GeneratorType) else retval
    if isinstance(data, ResultRecord):
        return Completed(data=data), None
    record = result_store.create_result_record(data, key=key, expiration=expiration)
    return Completed(data=record), record


async def return_value_to_state(
    retval: Any,
    result_store: Any,
    key: str | None = None,
    expiration: _dt.datetime | None = None,
    write_result: bool = False,
) -> State[Any]:
    """The state a run returning `retval` ends in, its value in a result record of
    `result_store` (see the module's docstring). A coroutine, as Prefect's."""
    state, record = _decide(retval, result_store, key, expiration)
    if record is not None and write_result:
        await _apersist_or_warn(result_store, record)
    return state


def return_value_to_state_sync(
    retval: Any,
    result_store: Any,
    key: str | None = None,
    expiration: _dt.datetime | None = None,
    write_result: bool = False,
) -> State[Any]:
    """`return_value_to_state` as a plain call."""
    state, record = _decide(retval, result_store, key, expiration)
    if record is not None and write_result:
        _persist_or_warn(result_store, record)
    return state


def to_state_create(state: State[Any]) -> Any:
    """The `StateCreate` payload for `state`: its type, name, message and details; its
    data only when it is a result record that was written (or that the current run
    persists), and then the record's metadata."""
    from flowbus._result_records import ResultRecord
    from flowbus._result_store import should_persist_result
    from flowbus.client.schemas.actions import StateCreate

    data = state.data
    keep = isinstance(data, ResultRecord) and (data.is_persisted or should_persist_result())
    return StateCreate(
        type=state.type,
        name=state.name,
        message=state.message,
        data=data.metadata if keep else None,
        state_details=state.state_details,
    )


__all__ = ["return_value_to_state", "return_value_to_state_sync", "to_state_create"]
