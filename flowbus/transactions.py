"""Isolation levels of cached task runs (Prefect's ``prefect.transactions.IsolationLevel``).

``READ_COMMITTED`` (the default): two runs that compute the same cache key at the
same time may both execute the body; the later write replaces the record.
``SERIALIZABLE``: a run holds a lock on its cache key from the cache read to the
cache write, so concurrent runs with one key, on any runners, execute the body once
and the others end ``Cached``::

    from flowbus.cache_policies import INPUTS
    from flowbus.transactions import IsolationLevel

    @task(cache_policy=INPUTS.configure(isolation_level=IsolationLevel.SERIALIZABLE))
    def expensive(x: int) -> int: ...
"""

from __future__ import annotations

from enum import StrEnum


class IsolationLevel(StrEnum):
    READ_COMMITTED = "READ_COMMITTED"
    SERIALIZABLE = "SERIALIZABLE"


__all__ = ["IsolationLevel"]
