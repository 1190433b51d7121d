"""The process's connection to the server's state: KV buckets and object stores.

Chosen by context: a runner installs it for the runs it executes
(:func:`install`); any other process gets it when ``FLOWBUS_NATS_URL`` is set.
With neither, :func:`connection` is None and the SDK keeps its state in
``FLOWBUS_HOME``. The connection lives on an event loop thread of its own, so
sync and async user code call it alike (:meth:`Remote.call`).
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import logging
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from events.bus import Bus
from events.errors import FlowbusError
from events.kv import KV, Objects
from events.settings import NatsSettings

T = TypeVar("T")
_log = logging.getLogger("flowbus.state")
CALL_TIMEOUT = 30.0


class Remote:
    """A bus on a private event loop thread, callable from any thread."""

    def __init__(self, settings: NatsSettings, *, ensure_layout: bool = True) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="flowbus-state",
                                        daemon=True)
        self._thread.start()
        self._kvs: dict[str, KV] = {}
        self._objects: dict[str, Objects] = {}
        try:
            self.bus: Bus = self.call(Bus.connect(settings, ensure=ensure_layout, name="flowbus-state"))
        except BaseException:
            self._stop_loop()
            raise
        self.layout = self.bus.layout

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = CALL_TIMEOUT) -> T:
        """Run ``coro`` on the connection's loop and wait for its result."""
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("Remote.call from the connection's own loop would deadlock")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def acall(self, coro: Coroutine[Any, Any, T]) -> T:
        """:meth:`call` for async code: awaits without blocking the caller's loop."""
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return await asyncio.wait_for(asyncio.wrap_future(future), CALL_TIMEOUT)

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Start ``coro`` on the connection's loop without waiting for it."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def kv(self, bucket: str) -> KV:
        kv = self._kvs.get(bucket)
        if kv is None:
            kv = self._kvs[bucket] = self.call(self.bus.kv(bucket))
        return kv

    def objects(self, bucket: str) -> Objects:
        store = self._objects.get(bucket)
        if store is None:
            store = self._objects[bucket] = self.call(self.bus.objects(bucket))
        return store

    def close(self) -> None:
        if self._loop.is_closed():
            return
        try:
            self.call(self.bus.close(), timeout=5)
        except (FlowbusError, TimeoutError, RuntimeError):
            pass
        self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self._loop.close()


_lock = threading.Lock()
_remote: Remote | None = None
_error: FlowbusError | None = None
_checked = False
# Installed by a runner: connect on first use, to a layout the runner already made.
_installed: NatsSettings | None = None


def connection() -> Remote | None:
    """The server connection for run-time state, or None for local ``FLOWBUS_HOME`` state.

    Raises the connection's error (naming the server) when a server is configured but
    cannot be reached: state never silently diverges to the local disk.
    """
    global _remote, _error, _checked
    if _checked:
        if _error is not None:
            raise _error
        return _remote
    with _lock:
        if not _checked:
            settings = _installed
            if settings is None and os.environ.get("FLOWBUS_NATS_URL"):
                settings = NatsSettings()
            if settings is not None:
                try:
                    _remote = Remote(settings, ensure_layout=_installed is None)
                    atexit.register(_remote.close)
                except FlowbusError as exc:
                    _error = exc
            _checked = True
    if _error is not None:
        raise _error
    return _remote


def install(settings: NatsSettings | None) -> None:
    """Use the server of ``settings`` for this process's state (None: local state).

    Runners call this in the process that executes runs; the connection is made on
    first use, and a previous one is closed.
    """
    global _installed
    reset()
    with _lock:
        _installed = settings
        if settings is None:
            global _checked
            _checked = True


def reset() -> None:
    """Forget the choice, so the next :func:`connection` reads the environment again."""
    global _remote, _error, _checked, _installed
    with _lock:
        previous, _remote, _error, _checked, _installed = _remote, None, None, False, None
    if previous is not None:
        previous.close()
