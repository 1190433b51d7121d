"""Transactions: group side effects so they commit together or roll back together
(Prefect's ``prefect.transactions``).

A transaction goes PENDING -> ACTIVE -> (STAGED) -> COMMITTED or ROLLED_BACK. Every
task run inside a ``with transaction():`` block is a child transaction: a completed
task run stages its result with its ``on_commit`` / ``on_rollback`` hooks, and they
run when the outermost transaction commits (on a clean exit) or rolls back (when an
exception leaves the block, e.g. a later task failed). A transaction with a ``key``
writes a record at that key on commit (the same record a task cache hit reads), and
a later transaction with that key begins COMMITTED::

    from flowbus import flow, task
    from flowbus.transactions import transaction

    @task
    def write(path: str) -> None: ...

    @write.on_rollback
    def undo(txn) -> None: ...

    @flow
    def pipeline() -> None:
        with transaction():
            write("out.txt")
            check("out.txt")   # raises: undo() runs

``IsolationLevel.SERIALIZABLE`` with a key holds a lock on the key from begin to
commit or rollback: the store's ``lock_manager`` when it has one, else the lock of
the process's state (a JetStream lease with a server, an ``flock`` without).
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import inspect
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from enum import StrEnum
from typing import Any

from flowbus._txn_store import _acquire, _exists, _run_awaitable, _store

_log = logging.getLogger("flowbus.transactions")
_NOT_SET: Any = object()


class IsolationLevel(StrEnum):
    READ_COMMITTED = "READ_COMMITTED"
    SERIALIZABLE = "SERIALIZABLE"


class CommitMode(StrEnum):
    EAGER = "EAGER"
    LAZY = "LAZY"
    OFF = "OFF"


class TransactionState(StrEnum):
    PENDING = "PENDING"
    ACTIVE = "ACTIVE"
    STAGED = "STAGED"
    COMMITTED = "COMMITTED"
    ROLLED_BACK = "ROLLED_BACK"


class TransactionRecord:
    """What a committed transaction wrote: ``result`` is the staged value."""

    def __init__(self, key: str, result: Any) -> None:
        self.key = key
        self.result = result

    def __repr__(self) -> str:
        return f"TransactionRecord(key={self.key!r}, result={self.result!r})"


_current: contextvars.ContextVar[Transaction | None] = contextvars.ContextVar("flowbus_transaction", default=None)


class Transaction:
    """One transaction; enter it with ``with`` (or use :func:`transaction`)."""

    def __init__(
        self,
        key: str | None = None,
        store: Any = None,
        commit_mode: CommitMode | str | None = None,
        isolation_level: IsolationLevel | str | None = None,
        overwrite: bool = False,
        write_on_commit: bool = True,
        logger: logging.Logger | logging.LoggerAdapter[Any] | None = None,
        *,
        state: TransactionState | str = TransactionState.PENDING,
    ) -> None:
        if key is not None and (not isinstance(key, str) or not key):
            raise ValueError(f"transaction key must be a non-empty string or None, got {key!r}")
        self.key = key
        self.store = store
        self.commit_mode = _enum(CommitMode, commit_mode, "commit_mode")
        self.isolation_level = _enum(IsolationLevel, isolation_level, "isolation_level")
        self.overwrite = overwrite
        self.write_on_commit = write_on_commit
        self.logger = logger or _log
        self.state: TransactionState = _enum(TransactionState, state, "state")
        self.children: list[Transaction] = []
        self.on_commit_hooks: list[Callable[..., Any]] = []
        self.on_rollback_hooks: list[Callable[..., Any]] = []
        self._stored_values: dict[str, Any] = {}
        self._staged_value: Any = None
        self._holder = str(uuid.uuid4())
        self._parent: Transaction | None = None
        self._token: contextvars.Token[Transaction | None] | None = None
        self._lock: Any = None

    # -- values shared along the transaction tree

    def set(self, name: str, value: Any) -> None:
        """Keep ``value`` under ``name`` for this transaction and its children."""
        self._stored_values[name] = value

    def get(self, name: str, default: Any = _NOT_SET) -> Any:
        """A copy of the value set under ``name`` here or in a parent; ``default``
        (or ValueError) when none has it."""
        if name in self._stored_values:
            return copy.deepcopy(self._stored_values[name])
        parent = self.get_parent()
        if parent is not None:
            return parent.get(name, default)
        if default is not _NOT_SET:
            return default
        raise ValueError(f"Could not retrieve value for unknown key: {name}")

    def get_parent(self) -> Transaction | None:
        return self._parent

    def add_child(self, child: Transaction) -> None:
        self.children.append(child)

    def is_pending(self) -> bool:
        return self.state is TransactionState.PENDING

    def is_active(self) -> bool:
        return self.state is TransactionState.ACTIVE

    def is_staged(self) -> bool:
        return self.state is TransactionState.STAGED

    def is_committed(self) -> bool:
        return self.state is TransactionState.COMMITTED

    def is_rolled_back(self) -> bool:
        return self.state is TransactionState.ROLLED_BACK

    # -- lifecycle

    def __enter__(self) -> Transaction:
        if self._token is not None:
            raise RuntimeError("Context already entered. Context enter calls cannot be nested.")
        self._parent = _current.get()
        parent = self._parent
        if self.commit_mode is None:
            self.commit_mode = parent.commit_mode if parent is not None else CommitMode.LAZY
        if self.isolation_level is None:
            self.isolation_level = parent.isolation_level if parent is not None else IsolationLevel.READ_COMMITTED
        self.state = TransactionState.ACTIVE
        self._begin()
        self._token = _current.set(self)
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if self._token is None:
            raise RuntimeError("Asymmetric use of context. Context exit called without an enter.")
        if exc_type is not None:
            self._rollback()
            self._reset()
            return
        if self.commit_mode is CommitMode.EAGER:
            self._commit()
        if self._parent is not None:
            self._reset()  # the parent commits or rolls back this one with itself
            return
        if self.commit_mode is CommitMode.OFF:
            self._rollback()
        elif self.commit_mode is CommitMode.LAZY:
            self._commit()
        self._reset()

    def begin(self) -> None:
        """Take the lock (SERIALIZABLE with a key); COMMITTED when the key has a record."""
        self._begin()

    def read(self) -> TransactionRecord | None:
        """The record at the transaction's key (None: no key, or nothing committed)."""
        return self._read()

    def commit(self) -> bool:
        """Commit the children, run the commit hooks, write the record; False when
        already final, or when something failed (the transaction then rolls back)."""
        return self._commit()

    def rollback(self) -> bool:
        """Run the rollback hooks (last staged first), then the children's; False when
        already final or a hook failed."""
        return self._rollback()

    def reset(self) -> None:
        """Leave the context; the parent adopts this transaction, and rolls back with it."""
        self._reset()

    # The steps themselves, which the context manager and the parent call.

    def _begin(self) -> None:
        if self.key is None:
            return
        if self.isolation_level is IsolationLevel.SERIALIZABLE and self._lock is None:
            self.logger.debug("Acquiring lock for transaction %r", self.key)
            self._lock = _acquire(self.store, self.key, self._holder)
        if not self.overwrite and _exists(self.store, self.key):
            self.state = TransactionState.COMMITTED

    def _read(self) -> TransactionRecord | None:
        if self.key is None:
            return None
        # A SERIALIZABLE writer holding the key's lock is read once it is done, as
        # Prefect's ResultStore.read waits for the lock of another holder.
        manager = getattr(self.store, "lock_manager", None)
        if manager is not None and manager.is_locked(self.key) and not manager.is_lock_holder(self.key, self._holder):
            manager.wait_for_lock(self.key)
        raw = _store(self.store).read(self.key)
        if raw is None:
            return None
        from flowbus.results import decode_cache_record

        decoded = decode_cache_record(raw)
        if decoded is None:
            return None
        serializer, payload = decoded
        return TransactionRecord(self.key, serializer.loads(payload))

    def stage(
        self,
        value: Any,
        on_rollback_hooks: list[Callable[..., Any]] | None = None,
        on_commit_hooks: list[Callable[..., Any]] | None = None,
    ) -> None:
        """Stage ``value`` (written to the key on commit) and hooks to run then."""
        if self.state is TransactionState.COMMITTED:
            return
        self._staged_value = value
        self.on_rollback_hooks += on_rollback_hooks or []
        self.on_commit_hooks += on_commit_hooks or []
        self.state = TransactionState.STAGED

    def _commit(self) -> bool:
        if self.state in (TransactionState.ROLLED_BACK, TransactionState.COMMITTED):
            self._release()
            return False
        try:
            for child in self.children:
                _child_step(child, "commit")
            for hook in self.on_commit_hooks:
                self._run_hook(hook, "commit")
            if self.key is not None and self.write_on_commit:
                self._write()
            self.state = TransactionState.COMMITTED
            self._release()
            return True
        except Exception:
            self.logger.exception("An error was encountered while committing transaction %r", self.key)
            self._rollback()
            return False

    def _rollback(self) -> bool:
        if self.state in (TransactionState.ROLLED_BACK, TransactionState.COMMITTED):
            return False
        try:
            for hook in reversed(self.on_rollback_hooks):
                self._run_hook(hook, "rollback")
            self.state = TransactionState.ROLLED_BACK
            for child in reversed(self.children):
                _child_step(child, "rollback")
            return True
        except Exception:
            self.logger.exception("An error was encountered while rolling back transaction %r", self.key)
            return False
        finally:
            self._release()

    def _reset(self) -> None:
        parent = self._parent
        if parent is not None:
            parent.add_child(self)
        if self._token is not None:
            _current.reset(self._token)
            self._token = None
        if parent is not None and self.state is TransactionState.ROLLED_BACK:
            parent._rollback()

    def _run_hook(self, hook: Callable[..., Any], kind: str) -> None:
        name = getattr(hook, "__name__", repr(hook))
        quiet = not getattr(hook, "log_on_run", True)
        if not quiet:
            self.logger.info("Running %s hook %r", kind, name)
        try:
            outcome = hook(self)
            if inspect.isawaitable(outcome):
                _run_awaitable(outcome)
        except Exception:
            if not quiet:
                self.logger.error("An error was encountered while running %s hook %r", kind, name)
            raise
        if not quiet:
            self.logger.info("%s hook %r finished running successfully", kind.capitalize(), name)

    def _write(self) -> None:
        from flowbus.results import encode_cache_record
        from flowbus.serializers import resolve_serializer

        serializer = getattr(self.store, "serializer", None) or resolve_serializer(None)
        payload = serializer.dumps(self._staged_value)
        assert self.key is not None
        _store(self.store).write(self.key, encode_cache_record(serializer, payload, None))

    def _release(self) -> None:
        lock, self._lock = self._lock, None
        if lock is not None:
            self.logger.debug("Releasing lock for transaction %r", self.key)
            lock()

    def _fields(self) -> tuple[Any, ...]:
        return (self.store, self.key, self.children, self.commit_mode, self.isolation_level, self.state,
                self.on_commit_hooks, self.on_rollback_hooks, self.overwrite, self.logger,
                self.write_on_commit)  # fmt: skip

    def __eq__(self, other: object) -> bool:
        """Equal when every setting and the state, children and hooks are (Prefect's
        transactions are pydantic models compared by their fields)."""
        if not isinstance(other, Transaction):
            return NotImplemented
        return self._fields() == other._fields()

    __hash__ = None  # type: ignore[assignment]  # mutable and compared by value, as Prefect's

    def __repr__(self) -> str:
        return f"Transaction(key={self.key!r}, state={self.state.value})"


def get_transaction() -> Transaction | None:
    """The transaction open around the current code (a task run's own, in its body)."""
    return _current.get()


@contextlib.contextmanager
def transaction(
    key: str | None = None,
    store: Any = None,
    commit_mode: CommitMode | str | None = None,
    isolation_level: IsolationLevel | str | None = None,
    overwrite: bool = False,
    write_on_commit: bool = True,
    logger: logging.Logger | logging.LoggerAdapter[Any] | None = None,
) -> Iterator[Transaction]:
    """Open a transaction around the block (see the module's documentation).

    ``store``: where the record of ``key`` lives: a result store, a directory, a
    ``ResultStore(lock_manager=...)``, or None for the task cache's store.
    """
    with Transaction(key, store, commit_mode, isolation_level, overwrite, write_on_commit, logger) as txn:
        yield txn


@contextlib.asynccontextmanager
async def atransaction(
    key: str | None = None,
    store: Any = None,
    commit_mode: CommitMode | str | None = None,
    isolation_level: IsolationLevel | str | None = None,
    overwrite: bool = False,
    write_on_commit: bool = True,
    logger: logging.Logger | logging.LoggerAdapter[Any] | None = None,
) -> AsyncIterator[Transaction]:
    """:func:`transaction` for async code: a lock wait does not block the event loop."""
    import asyncio

    txn = Transaction(key, store, commit_mode, isolation_level, overwrite, write_on_commit, logger)
    if key is not None and txn.isolation_level is IsolationLevel.SERIALIZABLE:
        txn._lock = await asyncio.to_thread(_acquire, store, key, txn._holder)  # off the loop
    with txn:
        yield txn


def _enum(kind: Any, value: Any, what: str) -> Any:
    if value is None:
        return None
    try:
        return kind(str(getattr(value, "value", value)).upper())
    except ValueError:
        raise ValueError(f"{what} {value!r} is not one of {', '.join(m.value for m in kind)}") from None


def _child_step(child: Transaction, name: str) -> None:
    """A child's ``commit`` / ``rollback``: its own override when a subclass has one
    (awaited when it is a coroutine, as Prefect does), else the step itself."""
    method = getattr(type(child), name)
    if method is getattr(Transaction, name) or method is getattr(AsyncTransaction, name):
        getattr(child, "_" + name)()
        return
    outcome = getattr(child, name)()
    if inspect.isawaitable(outcome):
        _run_awaitable(outcome)


# Prefect's base class of both kinds; flowbus's async kind derives from `Transaction`.
BaseTransaction = Transaction

from flowbus._async_transaction import AsyncTransaction  # noqa: E402  (it derives from Transaction)

__all__ = [
    "AsyncTransaction",
    "BaseTransaction",
    "CommitMode",
    "IsolationLevel",
    "Transaction",
    "TransactionRecord",
    "TransactionState",
    "atransaction",
    "get_transaction",
    "transaction",
]
