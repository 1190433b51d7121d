"""Locks for the processes of one machine (Prefect's ``prefect.locking.filesystem``).

Each key is an ``flock`` on a file in ``lock_files_directory``; the kernel frees it
when the holding process dies. A ``hold_timeout`` is recorded beside it: past it,
another holder may break the lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import threading
import time
from pathlib import Path

from flowbus.locking._base import PollingLocks, check_key


class FileSystemLockManager(PollingLocks):
    """Locks as files under ``lock_files_directory`` (created when missing)."""

    def __init__(self, lock_files_directory: str | os.PathLike[str]) -> None:
        self.lock_files_directory = Path(lock_files_directory)
        self._mutex = threading.Lock()
        self._fds: dict[str, tuple[int, str]] = {}

    def _path(self, key: str) -> Path:
        return self.lock_files_directory / (hashlib.sha256(key.encode()).hexdigest() + ".lock")

    def _meta(self, key: str) -> dict[str, object] | None:
        try:
            meta = json.loads(self._path(key).with_suffix(".json").read_text())
        except (OSError, ValueError):
            return None
        return meta if isinstance(meta, dict) else None

    def _try_acquire(self, key: str, holder: str, hold_timeout: float | None) -> bool:
        with self._mutex:
            held = self._fds.get(key)
            if held is not None:
                if held[1] != holder:
                    meta = self._meta(key)
                    expires = meta.get("expires") if meta else None
                    if not isinstance(expires, int | float) or expires > time.time():
                        return False
                    self._unlock(key)
                else:
                    self._write_meta(key, holder, hold_timeout)
                    return True
            self.lock_files_directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(self._path(key), os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            self._fds[key] = (fd, holder)
            self._write_meta(key, holder, hold_timeout)
            return True

    def _write_meta(self, key: str, holder: str, hold_timeout: float | None) -> None:
        expires = None if hold_timeout is None else time.time() + hold_timeout
        self._path(key).with_suffix(".json").write_text(json.dumps({"holder": holder, "expires": expires}))

    def _unlock(self, key: str) -> None:
        fd, _ = self._fds.pop(key)
        with contextlib.suppress(OSError):
            self._path(key).with_suffix(".json").unlink()
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def release_lock(self, key: str, holder: str) -> None:
        """Give the lock back; ValueError when ``holder`` does not hold it here."""
        check_key(key, holder)
        with self._mutex:
            held = self._fds.get(key)
            if held is None or held[1] != holder:
                raise ValueError(f"No lock held by {holder!r} on {key!r}")
            self._unlock(key)

    def is_locked(self, key: str) -> bool:
        check_key(key)
        with self._mutex:
            if key in self._fds:
                return True
            path = self._path(key)
            if not path.exists():
                return False
            fd = os.open(path, os.O_RDWR)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            finally:
                os.close(fd)
            return False

    def is_lock_holder(self, key: str, holder: str) -> bool:
        check_key(key, holder)
        with self._mutex:
            held = self._fds.get(key)
            return held is not None and held[1] == holder


__all__ = ["FileSystemLockManager"]
