"""A sync call run in a (pooled) thread that an event loop awaits and can interrupt.

A task worker runs each background task run's engine this way, so that cancelling
the run stops its body: :meth:`BodyThread.interrupt` raises ``asyncio.CancelledError``
inside the thread at its next bytecode (the engine ends the run ``Cancelled``, no
retries). Code blocked inside C (a long ``time.sleep``, a socket read) cannot be
interrupted; the awaiting side stops waiting after a grace period and abandons the
thread (a daemon), whose eventual outcome is discarded.
"""

from __future__ import annotations

import asyncio
import contextvars
import ctypes
import queue
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


# A pool thread with no call to run for this long ends.
IDLE_SECONDS = 30.0


class _Pool:
    """Daemon threads that run one call after another, so a call does not wait for a
    new thread to start (``Thread.start`` blocks its caller, the event loop, until the
    thread runs). A thread whose call was interrupted is never reused: the raised
    exception may land late, in the pool's own code, and ends that thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle = 0  # threads waiting for a call, less the calls queued for them
        self._calls: queue.SimpleQueue[BodyThread[Any]] = queue.SimpleQueue()

    def submit(self, body: BodyThread[Any]) -> None:
        with self._lock:
            if self._idle > 0:
                self._idle -= 1
                self._calls.put(body)
                return
        threading.Thread(target=self._serve, args=(body,), name=body.name, daemon=True).start()

    def _serve(self, body: BodyThread[Any] | None) -> None:
        try:
            while body is not None:
                body._run()
                if body.interrupted:
                    return
                body = self._next()
        except BaseException:  # an interruption that landed after its call: retire
            return

    def _next(self) -> BodyThread[Any] | None:
        with self._lock:
            self._idle += 1
        try:
            return self._calls.get(timeout=IDLE_SECONDS)
        except queue.Empty:
            with self._lock:
                if self._idle > 0:  # more waiting threads than calls: this one ends
                    self._idle -= 1
                    return None
            return self._calls.get()  # a call was queued for this thread meanwhile


_pool = _Pool()


class BodyThread(Generic[T]):
    """``fn(*args)`` in a pooled daemon thread; ``await result()`` for its return value."""

    __slots__ = ("_active", "_args", "_fn", "_future", "_ident", "_lock", "_loop", "_woken",
                 "interrupted", "name")

    def __init__(self, fn: Callable[..., T], *args: Any, name: str = "flowbus-task-body") -> None:
        self._fn, self._args, self.name = fn, args, name
        self._loop = asyncio.get_running_loop()
        self._future: asyncio.Future[T] = self._loop.create_future()
        self._lock = threading.Lock()
        self._active = False
        self._ident: int | None = None  # the thread running the call, once it runs
        self.interrupted = False
        # Done once the call has ended or was interrupted: what `result` first waits for
        # (one future rather than an event, a task for it and a wait on both).
        self._woken: asyncio.Future[None] = self._loop.create_future()

    def start(self) -> BodyThread[T]:
        self._active = True
        _pool.submit(self)
        return self

    def _run(self) -> None:
        with self._lock:
            if self.interrupted:  # interrupted before a thread took it: never runs
                self._active = False
                self._loop.call_soon_threadsafe(self._deliver, None, _Interrupted("interrupted"))
                return
            self._ident = threading.get_ident()
        try:
            # A fresh context per call, as a new thread would have: nothing a previous
            # call set in context variables is seen by the next.
            value = contextvars.Context().run(self._fn, *self._args)
        except BaseException as exc:  # handed to the awaiting side
            self._settle(None, exc)
        else:
            self._settle(value, None)

    def _settle(self, value: T | None, error: BaseException | None) -> None:
        with self._lock:
            self._active = False
        self._loop.call_soon_threadsafe(self._deliver, value, error)

    def _deliver(self, value: T | None, error: BaseException | None) -> None:
        if not self._woken.done():
            self._woken.set_result(None)
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
        """Raise ``asyncio.CancelledError`` in the thread if its call is still running, or
        keep a call not yet taken by a thread from running (called on the loop that
        awaits :meth:`result`)."""
        if not self._woken.done():
            self._woken.set_result(None)
        with self._lock:
            if not self._active:
                return False
            self.interrupted = True
            if self._ident is not None:
                ctypes.pythonapi.PyThreadState_SetAsyncExc(
                    ctypes.c_ulong(self._ident), ctypes.py_object(asyncio.CancelledError))
            return True

    async def result(self, grace: float) -> T:
        """The call's value (its exception raised). Once :meth:`interrupt` was called,
        waits at most ``grace`` more seconds, then raises ``TimeoutError`` (the thread is
        abandoned)."""
        await self._woken
        if not self._future.done():  # interrupted: the thread gets ``grace`` seconds
            async with asyncio.timeout(grace):
                await asyncio.shield(self._future)
        return self._future.result()


class _Interrupted(Exception):
    """The call was interrupted before it returned."""


__all__ = ["BodyThread"]
