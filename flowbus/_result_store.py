"""`ResultStore`: where results go, and the result records Prefect's helpers make.

Prefect's ``ResultStore`` by its public methods: ``create_result_record`` wraps a value
in a `ResultRecord` whose metadata names its storage key, expiration and serializer;
``persist_result_record`` (``apersist_result_record``) writes it; ``read`` / ``aread``
give the record stored under a key, ``write`` / ``awrite`` make and write one, and
``exists`` says whether an unexpired record is there. For a store on local files the
storage key is the record's absolute file path, as with Prefect's local storage.

flowbus's engine keeps a run's value in its state (or a stored reference); these
records are what Prefect's public state helpers (`flowbus.states.return_value_to_state`,
`exception_to_failed_state(..., result_store=)`) produce.

Example::

    store = ResultStore(result_storage="/tmp/results")
    record = store.create_result_record({"rows": 3}, key="nightly")
    store.persist_result_record(record)
    assert store.read(record.metadata.storage_key).result == {"rows": 3}
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowbus._store_locks import StoreLocks
from flowbus.serializers import SerializerLike, resolve_serializer

if TYPE_CHECKING:
    from flowbus._result_records import ResultRecord, ResultRecordMetadata
    from flowbus.results import ResultStorage


def _default_key() -> str:
    return uuid.uuid4().hex


def _local_root(storage: Any) -> Path | None:
    """The directory of a store on local files (None for any other store)."""
    from flowbus.filesystems import LocalFileSystem
    from flowbus.results import LocalResultStore

    if isinstance(storage, LocalResultStore):
        return storage.root.expanduser().resolve()
    if isinstance(storage, LocalFileSystem):
        return Path(storage.basepath or Path.cwd()).resolve()
    return None


def _block_id(storage: Any) -> uuid.UUID | None:
    """The id of the saved block `storage` is (None for an unsaved one)."""
    block_id = getattr(storage, "_block_document_id", None)
    return block_id if isinstance(block_id, uuid.UUID) else None


class ResultStore(StoreLocks):
    """Prefect's ``ResultStore(...)``: where results go, how they are serialised, and the
    lock manager of ``SERIALIZABLE`` transactions on them.

    ``result_storage`` is a store, a directory, or None for the default result store.
    As a transaction's ``store``, None means the task cache's store instead, where task
    runs look their cache keys up.

    Example::

        from flowbus.locking.memory import MemoryLockManager
        from flowbus.transactions import IsolationLevel, transaction

        store = ResultStore(lock_manager=MemoryLockManager())
        with transaction(key="nightly", isolation_level=IsolationLevel.SERIALIZABLE, store=store):
            ...
    """

    def __init__(
        self,
        result_storage: ResultStorage | str | os.PathLike[str] | None = None,
        metadata_storage: Any = None,
        lock_manager: Any = None,
        serializer: SerializerLike | str | None = None,
        cache_result_in_memory: bool = True,
        storage_key_fn: Callable[[], str] = _default_key,
    ) -> None:
        self.result_storage = result_storage
        self.metadata_storage = metadata_storage
        self.lock_manager = lock_manager
        self.serializer = resolve_serializer(serializer)
        self.cache_result_in_memory = cache_result_in_memory
        self.storage_key_fn = storage_key_fn
        self.cache: dict[str, ResultRecord[Any]] = {}

    def _target(self) -> ResultStorage:
        from flowbus.results import resolve_result_store

        return resolve_result_store(self.result_storage)

    # -- bytes under a key (a local store also takes an absolute path inside it) ----------

    def _read_bytes(self, storage: Any, key: str) -> bytes | None:
        root = _local_root(storage)
        if root is not None and os.path.isabs(key):
            try:
                return Path(key).read_bytes()
            except FileNotFoundError:
                return None
        return storage.read(key)  # type: ignore[no-any-return]

    def _write_bytes(self, storage: Any, key: str, data: bytes) -> None:
        from flowbus.results import write_atomic

        root = _local_root(storage)
        if root is not None and os.path.isabs(key):
            write_atomic(Path(key), data)
        else:
            storage.write(key, data)

    def _storage_key(self, key: str) -> str:
        """The key a record is stored under: for local files, its absolute path."""
        target = self._target()
        root = _local_root(target)
        # A saved block keeps the key as given (it is read back through the block);
        # an unsaved file system stores the file's absolute path, as Prefect does.
        if root is None or os.path.isabs(key) or _block_id(target) is not None:
            return key
        path = getattr(target, "_path", None)
        return str(path(key).resolve()) if callable(path) else str(root / key)

    # -- records -----------------------------------------------------------------------

    def create_result_record(
        self, obj: Any, key: str | None = None, expiration: _dt.datetime | None = None
    ) -> ResultRecord[Any]:
        """A record of `obj` under `key` (default: ``storage_key_fn()``), not written yet."""
        from flowbus._result_records import ResultRecord, ResultRecordMetadata

        storage_key = self._storage_key(key or self.storage_key_fn())
        metadata = ResultRecordMetadata(serializer=self.serializer, expiration=expiration, storage_key=storage_key,
                                        storage_block_id=_block_id(self._target()))
        return ResultRecord(result=obj, metadata=metadata)

    def persist_result_record(self, result_record: ResultRecord[Any], holder: str | None = None) -> None:
        """Write `result_record` under its storage key (refused when another holder
        has the key locked); with ``metadata_storage``, the value and the metadata
        are written apart."""
        key = result_record.metadata.storage_key
        if key is None:
            raise ValueError("A result record needs a storage_key to be persisted.")
        self._refuse_if_locked(key, holder)
        target = self._target()
        if self.metadata_storage is not None:
            self._write_bytes(target, key, result_record.serialize_result())
            self._write_bytes(self.metadata_storage, key, result_record.serialize_metadata())
        else:
            self._write_bytes(target, key, result_record.serialize())
        result_record.mark_persisted()
        if self.cache_result_in_memory:
            self.cache[key] = result_record

    async def apersist_result_record(self, result_record: ResultRecord[Any], holder: str | None = None) -> None:
        """`persist_result_record` for async code (the write runs in a worker thread)."""
        holder = holder or self.generate_default_holder()
        await asyncio.to_thread(self.persist_result_record, result_record, holder)

    def read(self, key: str, holder: str | None = None) -> ResultRecord[Any]:
        """The record stored under `key`; ValueError when there is none."""
        from flowbus._result_records import ResultRecord, ResultRecordMetadata

        holder = holder or self.generate_default_holder()
        if self.lock_manager is not None and not self.is_lock_holder(key, holder):
            self.wait_for_lock(key)
        cached = self.cache.get(key)
        if cached is not None:
            if not _expired(cached.metadata.expiration):
                return cached
            del self.cache[key]
        target = self._target()
        if self.metadata_storage is not None:
            meta_bytes = self._read_bytes(self.metadata_storage, key)
            if meta_bytes is None:
                raise ValueError(f"Result record {key!r} does not exist.")
            metadata = ResultRecordMetadata.load_bytes(meta_bytes)
            value = self._read_bytes(target, metadata.storage_key or key)
            if value is None:
                raise ValueError(f"Result record {key!r} does not exist.")
            record = ResultRecord.deserialize_from_result_and_metadata(value, meta_bytes)
        else:
            content = self._read_bytes(target, key)
            committed = self._transaction_record(key) if content is None and self.result_storage is None else None
            if content is not None:
                record = ResultRecord.deserialize(content, backup_serializer=self.serializer)
            elif committed is not None:
                record = committed
            else:
                raise ValueError(f"Result record {key!r} does not exist.")
        record.mark_persisted()
        if self.cache_result_in_memory:
            self.cache[key] = record
        return record

    def _transaction_record(self, key: str) -> ResultRecord[Any] | None:
        """What a transaction committed under `key` with a store like this one (no
        ``result_storage``: the task cache's store, `flowbus.transactions`), as a record;
        Prefect keeps both in its default result storage."""
        from flowbus.results import decode_cache_record, default_cache_store

        data = default_cache_store().read(key)
        decoded = decode_cache_record(data) if data is not None else None
        if decoded is None:
            return None
        serializer, payload = decoded
        return self.create_result_record(serializer.loads(payload), key)

    async def aread(self, key: str, holder: str | None = None) -> ResultRecord[Any]:
        """`read` for async code."""
        holder = holder or self.generate_default_holder()
        return await asyncio.to_thread(self.read, key, holder)

    def write(
        self, obj: Any, key: str | None = None, expiration: _dt.datetime | None = None, holder: str | None = None
    ) -> None:
        """Make a record of `obj` and write it (refused while another holder has `key` locked)."""
        if key is not None:
            self._refuse_if_locked(key, holder)
        self.persist_result_record(self.create_result_record(obj, key, expiration), holder)

    async def awrite(
        self, obj: Any, key: str | None = None, expiration: _dt.datetime | None = None, holder: str | None = None
    ) -> None:
        """`write` for async code."""
        if key is not None:
            self._refuse_if_locked(key, holder)
        await self.apersist_result_record(self.create_result_record(obj, key, expiration), holder)

    def _refuse_if_locked(self, key: str, holder: str | None) -> None:
        holder = holder or self.generate_default_holder()
        if self.lock_manager is not None and self.is_locked(key) and not self.is_lock_holder(key, holder):
            raise RuntimeError(f"Cannot write to result record with key {key} because it is locked by another holder.")

    def exists(self, key: str) -> bool:
        """Whether a readable, unexpired record is stored under `key`."""
        try:
            record = self.read(key)
        except Exception:
            return False
        return not _expired(record.metadata.expiration)

    async def aexists(self, key: str) -> bool:
        """`exists` for async code."""
        return await asyncio.to_thread(self.exists, key)

    @classmethod
    def _from_metadata_sync(cls, metadata: ResultRecordMetadata) -> ResultRecord[Any]:
        """The record `metadata` describes, read from the default result store."""
        if metadata.storage_key is None:
            raise ValueError("storage_key is required to hydrate a result record from metadata")
        return cls(serializer=metadata.serializer).read(metadata.storage_key)

    @classmethod
    async def _from_metadata(cls, metadata: ResultRecordMetadata) -> ResultRecord[Any]:
        return await asyncio.to_thread(cls._from_metadata_sync, metadata)

    def supports_isolation_level(self, level: Any) -> bool:
        """Every level: without a lock manager, the process's state locks serve."""
        return str(getattr(level, "value", level)) in ("READ_COMMITTED", "SERIALIZABLE")


def should_persist_result() -> bool:
    """Whether the current run persists its result (the task's, else the flow's
    ``persist_result``); outside a run, False (flowbus persists on request only)."""
    from flowbus.context import FlowRunContext, TaskRunContext

    task_ctx = TaskRunContext.get()
    if task_ctx is not None:
        return bool(getattr(task_ctx.task, "persist_result", False))
    flow_ctx = FlowRunContext.get()
    if flow_ctx is not None:
        return bool(getattr(flow_ctx.flow, "persist_result", False))
    return False


def _expired(expiration: _dt.datetime | None) -> bool:
    return expiration is not None and expiration <= _dt.datetime.now(_dt.UTC)


__all__ = ["ResultStore", "should_persist_result"]
