"""A sync call run in a thread of its own that an event loop awaits and can interrupt.

A task worker runs each background task run's engine this way, so that cancelling
the run stops its body: :meth:`BodyThread.interrupt` raises ``asyncio.CancelledError``
inside the thread at its next bytecode (the engine ends the run ``Cancelled``, no
retries). Code blocked inside C (a long ``time.sleep``, a socket read) cannot be
interrupted; the awaiting side stops waiting after a grace period and abandons the
thread (a daemon), whose eventual outcome is discarded.
"""

from __future__ import annotations

import asyncio
import ctypes
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class BodyThread(Generic[T]):
    """``fn(*args)`` in a new daemon thread; ``await result()`` for its return value."""

    __slots__ = ("_active", "_args", "_fn", "_future", "_interrupt", "_lock", "_loop", "_thread",
                 "interrupted")

    def __init__(self, fn: Callable[..., T], *args: Any, name: str = "flowbus-task-body") -> None:
        self._fn, self._args = fn, args
        self._loop = asyncio.get_running_loop()
        self._future: asyncio.Future[T] = self._loop.create_future()
        self._lock = threading.Lock()
        self._active = False
        self.interrupted = False
        self._interrupt = asyncio.Event()
        self._thread = threading.Thread(target=self._target, name=name, daemon=True)

    def start(self) -> BodyThread[T]:
        self._active = True
        self._thread.start()
        return self

    def _target(self) -> None:
        try:
            try:
                value = self._fn(*self._args)
            except BaseException as exc:  # handed to the awaiting side
                self._settle(None, exc)
            else:
                self._settle(value, None)
        except BaseException:  # an interruption that landed after the call: nothing to stop
            pass

    def _settle(self, value: T | None, error: BaseException | None) -> None:
        with self._lock:
            self._active = False
        self._loop.call_soon_threadsafe(self._deliver, value, error)

    def _deliver(self, value: T | None, error: BaseException | None) -> None:
        if self._future.done():
            return
        if error is not None:
            # CancelledError cannot travel through a future as an error: it would
            # cancel the awaiting task instead.
            if isinstance(error, asyncio.CancelledError):
                error = _Interrupted("interrupted")
            self._future.set_exception(error)
        else:
            self._future.set_result(value)  # type: ignore[arg-type]

    def interrupt(self) -> bool:
        """Raise ``asyncio.CancelledError`` in the thread if its call is still running
        (called on the loop that awaits :meth:`result`)."""
        self._interrupt.set()
        with self._lock:
            if not self._active or self._thread.ident is None:
                return False
            self.interrupted = True
            ctypes.pythonapi.PyThreadState_SetAsyncExc(
                ctypes.c_ulong(self._thread.ident), ctypes.py_object(asyncio.CancelledError))
            return True

    async def result(self, grace: float) -> T:
        """The call's value (its exception raised). Once :meth:`interrupt` was called,
        waits at most ``grace`` more seconds, then raises ``TimeoutError`` (the thread is
        abandoned)."""
        call: asyncio.Future[Any] = asyncio.shield(self._future)
        interrupted: asyncio.Future[Any] = asyncio.ensure_future(self._interrupt.wait())
        try:
            await asyncio.wait({call, interrupted}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            interrupted.cancel()
        if not call.done():
            async with asyncio.timeout(grace):
                await call
        return self._future.result()


class _Interrupted(Exception):
    """The call was interrupted before it returned."""


__all__ = ["BodyThread"]
