"""Flow-run input with no server: one file per input under ``$FLOWBUS_HOME/run-input``.

A flow run that no runner holds (a flow called in a script or a test) keeps its inputs
here, as variables and artifacts live under ``FLOWBUS_HOME`` with no server; Prefect's
ephemeral API server keeps them for such runs. The stored bytes are the server's
(`events.run_input.StoredInput`), under the same keys (``<flow-run-id>.<key>``).
"""

from __future__ import annotations

from typing import Any

from events.errors import AlreadyExists
from events.pauses import input_key
from events.run_input import StoredInput, encode
from flowbus._state import LocalBucket
from flowbus.results import flowbus_home


def _bucket() -> LocalBucket:
    return LocalBucket(flowbus_home() / "run-input", ".json")


def create(flow_run_id: str, key: str, value: Any, sender: str | None) -> None:
    """Store an input; `AlreadyExists` if the run has one under ``key``."""
    if not _bucket().create(input_key(flow_run_id, key), encode(key, value, sender)):
        raise AlreadyExists(f"flow run {flow_run_id} already has a run input {key!r}")


def read(flow_run_id: str, key: str) -> StoredInput | None:
    data = _bucket().get(input_key(flow_run_id, key))
    return None if data is None else StoredInput.model_validate_json(data)


def filter_inputs(flow_run_id: str, prefix: str, limit: int, exclude: set[str]) -> list[StoredInput]:
    """The run's inputs whose key starts with ``prefix``, oldest first, at most ``limit``."""
    input_key(flow_run_id, "x")  # the id's shape, as the server checks it
    bucket, found = _bucket(), []
    for name in bucket.keys():
        if not name.startswith(f"{flow_run_id}."):
            continue
        data = bucket.get(name)
        if data is None:  # deleted meanwhile
            continue
        stored = StoredInput.model_validate_json(data)
        if stored.key.startswith(prefix) and stored.key not in exclude:
            found.append(stored)
    found.sort(key=lambda stored: stored.created)
    return found[:limit]


def delete(flow_run_id: str, key: str) -> None:
    _bucket().delete(input_key(flow_run_id, key))
