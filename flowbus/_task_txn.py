"""A task run as a child transaction (see :mod:`flowbus.transactions`).

Inside an open transaction, or for a task with ``on_commit`` / ``on_rollback``
hooks, a run opens a transaction of its own around its body (``get_transaction()``
there is the run's, and reads its parent's values). A run that completes stages its
hooks; its transaction commits with its parent, or at once with none. When it rolls
back, the run's state becomes ``RolledBack`` and the cache record the run wrote is
removed.
"""

from __future__ import annotations

from typing import Any

from flowbus.states import Completed, State
from flowbus.transactions import Transaction, TransactionState, get_transaction


def open_task_transaction(task: Any) -> Transaction | None:
    """The run's transaction, entered; None when no transaction concerns it."""
    if get_transaction() is None and not (task.on_commit_hooks or task.on_rollback_hooks):
        return None
    txn = Transaction(write_on_commit=False)
    txn.__enter__()
    return txn


def close_task_transaction(txn: Transaction, task: Any, task_run: Any, final: State[Any] | None) -> None:
    """Stage a completed run's hooks, then leave the run's transaction (``final`` None:
    the run was interrupted, nothing is staged)."""
    txn.key = task_run.cache_key
    if final is None:
        pass
    elif final.name == "Cached":
        txn.state = TransactionState.COMMITTED  # nothing of this run to commit or undo
    elif final.is_completed():
        txn.stage(
            final.data,
            on_rollback_hooks=[_rolled_back(task, task_run), *task.on_rollback_hooks],
            on_commit_hooks=list(task.on_commit_hooks),
        )
    txn.__exit__(None, None, None)


def _rolled_back(task: Any, task_run: Any) -> Any:
    def mark_rolled_back(txn: Transaction) -> None:
        from flowbus._run_support import set_task_state
        from flowbus.cache_policies import cache_store

        if task_run.cache_key is not None:
            cache_store(getattr(task, "_cache_policy", None)).delete(str(task_run.cache_key))
        set_task_state(task_run, Completed(name="RolledBack", message="Task rolled back as part of transaction",
                                           data=task_run.state.data))

    mark_rolled_back.log_on_run = False  # type: ignore[attr-defined]
    return mark_rolled_back


class _ManagedLock:
    """A lock taken from a :mod:`flowbus.locking` manager; ``release`` gives it back."""

    def __init__(self, manager: Any, key: str, holder: str) -> None:
        self._manager, self._key, self._holder = manager, key, holder

    def release(self) -> None:
        self._manager.release_lock(self._key, holder=self._holder)


def held_by(manager: Any, key: str, holder: str) -> _ManagedLock:
    """Wait for ``manager``'s lock on ``key`` (a cache key, under SERIALIZABLE)."""
    manager.acquire_lock(key, holder=holder)
    return _ManagedLock(manager, key, holder)
