"""Where a transaction's record and lock live: the store helpers of
`flowbus.transactions` (a store given as a directory, a `ResultStore`, or None for
the task cache's store; its ``exists``; the lock of a SERIALIZABLE key)."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from typing import Any

from flowbus.exceptions import ConfigurationError

_NOT_SET: Any = object()


def _store(store: Any) -> Any:
    from flowbus.results import LocalResultStore, default_cache_store

    if store is None:
        return default_cache_store()
    if isinstance(store, str | os.PathLike):
        return LocalResultStore(store)
    inner = getattr(store, "result_storage", _NOT_SET)
    if inner is not _NOT_SET:  # a flowbus.results.ResultStore(...) configuration
        return _store(inner)
    if not all(callable(getattr(store, m, None)) for m in ("read", "write")):
        raise ConfigurationError(f"transaction store {store!r} has no read/write methods")
    return store


def _exists(store: Any, key: str) -> bool:
    """Whether ``key`` has a record: through the ``exists`` (or ``aexists``) of a
    `ResultStore` subclass that defines one, as Prefect's result stores answer, else by
    reading it."""
    from flowbus.results import ResultStore

    for name in ("exists", "aexists"):
        # ResultStore's own exists reads result records; a transaction's value is
        # stored as the task cache stores it, so only a subclass's own method answers.
        own = isinstance(store, ResultStore) and getattr(type(store), name, None) is not getattr(ResultStore, name)
        method = getattr(store, name, None) if own else None
        if callable(method):
            outcome = method(key)
            return bool(_awaited(outcome) if inspect.isawaitable(outcome) else outcome)
    return _store(store).read(key) is not None


def _acquire(store: Any, key: str, holder: str) -> Callable[[], None]:
    """Hold the lock of ``key``; returns the function that releases it."""
    manager = getattr(store, "lock_manager", None)
    if manager is not None:
        manager.acquire_lock(key, holder=holder)
        return lambda: manager.release_lock(key, holder=holder)
    from flowbus._cache_lock import acquire

    return acquire(key).release


def _awaited(awaitable: Any) -> Any:
    """The value of ``awaitable``, awaited from sync code (see `_run_awaitable`)."""
    box: list[Any] = []

    async def wait() -> None:
        box.append(await awaitable)

    _run_awaitable(wait())
    return box[0]


def _run_awaitable(awaitable: Any) -> None:
    import asyncio

    async def wait() -> None:
        await awaitable

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(wait())
        return
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, wait()).result()
