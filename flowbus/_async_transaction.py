"""`AsyncTransaction`: a transaction entered with ``async with``, whose steps are awaited.

Prefect's class of that name. It behaves as `Transaction` (hooks, nesting, commit
modes, keys, SERIALIZABLE), with ``begin``, ``read``, ``commit``, ``rollback`` and
``reset`` as coroutines, and a SERIALIZABLE lock taken off the event loop. A plain
``with`` is refused, as in Prefect.

Example::

    async with AsyncTransaction(key="nightly") as txn:
        txn.stage(rows)
        record = await txn.read()
"""

from __future__ import annotations

import asyncio
from typing import Any, NoReturn

from flowbus._txn_store import _acquire
from flowbus.transactions import IsolationLevel, Transaction, TransactionRecord, _current


class AsyncTransaction(Transaction):
    """A `Transaction` for async code: ``async with``, and awaited steps."""

    async def __aenter__(self) -> AsyncTransaction:
        parent = _current.get()
        level = self.isolation_level or (parent.isolation_level if parent is not None else None)
        if self.key is not None and level is IsolationLevel.SERIALIZABLE and self._lock is None:
            self._lock = await asyncio.to_thread(_acquire, self.store, self.key, self._holder)
        Transaction.__enter__(self)
        return self

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        Transaction.__exit__(self, exc_type, exc, tb)

    def __enter__(self) -> NoReturn:
        raise NotImplementedError("AsyncTransaction does not support the `with` statement. Use the `async with` statement instead.")

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> NoReturn:
        raise NotImplementedError("AsyncTransaction does not support the `with` statement. Use the `async with` statement instead.")

    async def begin(self) -> None:  # type: ignore[override]
        """Take the lock (SERIALIZABLE with a key) off the event loop; COMMITTED when the key has a record."""
        await asyncio.to_thread(self._begin)

    async def read(self) -> TransactionRecord | None:  # type: ignore[override]
        """The record at the transaction's key (None: no key, or nothing committed)."""
        return await asyncio.to_thread(self._read)

    async def commit(self) -> bool:  # type: ignore[override]
        """Commit the children, run the commit hooks, write the record (see `Transaction.commit`)."""
        return self._commit()

    async def rollback(self) -> bool:  # type: ignore[override]
        """Run the rollback hooks, then the children's (see `Transaction.rollback`)."""
        return self._rollback()

    async def reset(self) -> None:  # type: ignore[override]
        """Leave the context; the parent adopts this transaction."""
        self._reset()


__all__ = ["AsyncTransaction"]
