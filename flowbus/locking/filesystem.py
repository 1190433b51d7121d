"""Locks for the processes of one machine (Prefect's ``prefect.locking.filesystem``).

Each key is an ``flock`` on a file in ``lock_files_directory``; the kernel frees it
when the holding process dies. A ``hold_timeout`` is recorded beside it (the
``expiration``, read with this module's ``now``): past it the lock counts as free,
and the next holder breaks it by replacing the file.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import hashlib
import json
import os
import threading
from pathlib import Path
from typing import NamedTuple

from flowbus.locking._base import PollingLocks, check_key, not_held
from flowbus.types._datetime import now, parse_datetime


class _Held(NamedTuple):
    fd: int
    holder: str
    expiration: datetime.datetime | None


class FileSystemLockManager(PollingLocks):
    """Locks as files under ``lock_files_directory`` (created when missing)."""

    def __init__(self, lock_files_directory: str | os.PathLike[str]) -> None:
        self.lock_files_directory = Path(lock_files_directory).expanduser()
        self._mutex = threading.Lock()
        self._fds: dict[str, _Held] = {}

    def _path(self, key: str) -> Path:
        return self.lock_files_directory / (hashlib.sha256(key.encode()).hexdigest() + ".lock")

    def _meta_path(self, key: str) -> Path:
        return self._path(key).with_suffix(".json")

    def _expired_on_disk(self, key: str) -> bool:
        try:
            meta = json.loads(self._meta_path(key).read_text())
            expiration = meta.get("expiration") if isinstance(meta, dict) else None
            return expiration is not None and parse_datetime(expiration) <= now("UTC")
        except (OSError, ValueError, TypeError):
            return False

    def _break(self, key: str) -> None:
        """Remove an expired lock another holder has: its flock stays on the old file."""
        for path in (self._meta_path(key), self._path(key)):
            with contextlib.suppress(OSError):
                path.unlink()

    def _same_file(self, key: str, fd: int) -> bool:
        try:
            return os.stat(self._path(key)).st_ino == os.fstat(fd).st_ino
        except OSError:
            return False

    def _mine(self, key: str) -> _Held | None:
        """The lock this manager holds on ``key``, if it is still valid; else drop it."""
        held = self._fds.get(key)
        if held is None:
            return None
        expired = held.expiration is not None and held.expiration <= now("UTC")
        if expired or not self._same_file(key, held.fd):
            self._unlock(key)
            return None
        return held

    def _try_acquire(self, key: str, holder: str, hold_timeout: float | None) -> bool:
        with self._mutex:
            held = self._mine(key)
            if held is not None:
                if held.holder != holder:
                    return False
                self._record(key, held.fd, holder, hold_timeout)
                return True
            self.lock_files_directory.mkdir(parents=True, exist_ok=True)
            for _ in range(2):
                fd = os.open(self._path(key), os.O_RDWR | os.O_CREAT, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    if not self._expired_on_disk(key):
                        return False
                    self._break(key)
                    continue
                if not self._same_file(key, fd):  # broken and replaced meanwhile
                    os.close(fd)
                    return False
                self._record(key, fd, holder, hold_timeout)
                return True
            return False

    def _record(self, key: str, fd: int, holder: str, hold_timeout: float | None) -> None:
        expiration = None if hold_timeout is None else now("UTC") + datetime.timedelta(seconds=hold_timeout)
        self._fds[key] = _Held(fd, holder, expiration)
        meta = {"holder": holder, "expiration": expiration.isoformat() if expiration else None}
        self._meta_path(key).write_text(json.dumps(meta))

    def _unlock(self, key: str) -> None:
        held = self._fds.pop(key)
        if self._same_file(key, held.fd):
            with contextlib.suppress(OSError):
                self._meta_path(key).unlink()
        with contextlib.suppress(OSError):
            fcntl.flock(held.fd, fcntl.LOCK_UN)
        os.close(held.fd)

    def release_lock(self, key: str, holder: str) -> None:
        """Give the lock back; ValueError when ``holder`` does not hold it here."""
        check_key(key, holder)
        with self._mutex:
            held = self._mine(key)
            if held is None or held.holder != holder:
                raise not_held(key, holder)
            self._unlock(key)

    def is_locked(self, key: str) -> bool:
        """Whether a live (unexpired) lock is held on ``key``, here or by another process."""
        check_key(key)
        with self._mutex:
            if self._mine(key) is not None:
                return True
            path = self._path(key)
            try:
                fd = os.open(path, os.O_RDWR)
            except FileNotFoundError:
                return False
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if self._expired_on_disk(key):
                    self._break(key)
                    return False
                return True
            finally:
                os.close(fd)
            return False

    def is_lock_holder(self, key: str, holder: str) -> bool:
        check_key(key, holder)
        with self._mutex:
            held = self._mine(key)
            return held is not None and held.holder == holder


__all__ = ["FileSystemLockManager"]
