"""Locks on keys, for transactions with ``IsolationLevel.SERIALIZABLE`` (Prefect's
``prefect.locking``), also usable directly.

- :class:`~flowbus.locking.memory.MemoryLockManager`: threads of one process.
- :class:`~flowbus.locking.filesystem.FileSystemLockManager`: processes of one machine
  (an ``flock`` per key in a directory).
- :class:`~flowbus.locking.jetstream.JetStreamLockManager`: any process connected to
  the server; the lock is a lease in the ``flowbus-cache`` KV bucket, so a holder that
  dies frees it when the lease expires.

Example::

    from flowbus.locking.memory import MemoryLockManager

    locks = MemoryLockManager()
    assert locks.acquire_lock("report", holder="me", acquire_timeout=1)
    assert locks.is_lock_holder("report", "me")
    locks.release_lock("report", holder="me")
"""

from flowbus.locking.filesystem import FileSystemLockManager
from flowbus.locking.jetstream import JetStreamLockManager
from flowbus.locking.memory import MemoryLockManager
from flowbus.locking.protocol import LockManager

__all__ = ["FileSystemLockManager", "JetStreamLockManager", "LockManager", "MemoryLockManager"]
