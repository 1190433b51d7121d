"""The two tiny drivers of the engine, and how they call user code.

The engine (`flowbus._task_engine`, `flowbus._flow_engine`) is a generator: it yields a `Call` where user code must
run and a `Sleep` where it must wait, and receives the outcome as ``(ok, value)``
(``value`` is the exception when ``ok`` is False). `drive_sync` and `drive_async` are
the only code that differs between sync and async runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import ctypes
import inspect
import threading
import time
import weakref
from collections.abc import Callable, Generator
from typing import Any, TypeVar

from flowbus.exceptions import FlowbusTimeoutError, RunInterrupted

T = TypeVar("T")


class Call:
    """Ask the driver to call user code, optionally within `timeout` seconds."""

    __slots__ = ("args", "fn", "kwargs", "timeout", "timeout_error")

    def __init__(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        timeout: float | None = None,
        timeout_error: type[FlowbusTimeoutError] = FlowbusTimeoutError,
    ) -> None:
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.timeout = timeout
        self.timeout_error = timeout_error

    def timed_out(self) -> FlowbusTimeoutError:
        return self.timeout_error(f"Run exceeded its timeout of {self.timeout} seconds")


class Blocking:
    """Ask the driver to call engine code that may block (waiting for a lock): inline
    in a sync run; in a worker thread in an async run, so that the event loop keeps
    running the other runs, one of which may hold what this call waits for."""

    __slots__ = ("args", "fn")

    def __init__(self, fn: Callable[..., Any], *args: Any) -> None:
        self.fn = fn
        self.args = args


class Sleep:
    """Ask the driver to wait (a retry delay)."""

    __slots__ = ("seconds",)

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds


Outcome = tuple[bool, Any]
Steps = Generator[Call | Sleep | Blocking, Outcome, T]


def drive_sync(steps: Steps[T]) -> T:
    """Run the engine in this thread; coroutines from async user code run on a shared loop."""
    outcome: Outcome | None = None
    while True:
        try:
            request = steps.send(outcome)  # type: ignore[arg-type]
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        try:
            if type(request) is Sleep:
                time.sleep(request.seconds)
                outcome = (True, None)
            elif type(request) is Blocking:
                outcome = (True, request.fn(*request.args))
            elif request.timeout is None:  # type: ignore[union-attr]
                value = request.fn(*request.args, **request.kwargs)  # type: ignore[union-attr]
                if inspect.isawaitable(value):
                    value = run_coro_sync(value)
                outcome = (True, value)
            elif inspect.iscoroutinefunction(request.fn):  # type: ignore[union-attr]
                # Cancel the coroutine itself at its deadline, on the loop running it.
                outcome = (True, run_coro_sync(_await_with_timeout(request)))  # type: ignore[arg-type]
            else:
                outcome = (True, call_with_thread_timeout(request))  # type: ignore[arg-type]
        except BaseException as exc:  # handed to the engine, which decides and re-raises
            outcome = (False, exc)


async def drive_async(steps: Steps[T]) -> T:
    """Run the engine in the current event loop; sync user code runs inline."""
    outcome: Outcome | None = None
    while True:
        try:
            request = steps.send(outcome)  # type: ignore[arg-type]
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        try:
            if type(request) is Sleep:
                await asyncio.sleep(request.seconds)
                outcome = (True, None)
            elif type(request) is Blocking:
                outcome = (True, await asyncio.to_thread(request.fn, *request.args))
            elif request.timeout is None:  # type: ignore[union-attr]
                value = request.fn(*request.args, **request.kwargs)  # type: ignore[union-attr]
                if inspect.isawaitable(value):
                    value = await value
                outcome = (True, value)
            elif inspect.iscoroutinefunction(request.fn):  # type: ignore[union-attr]
                outcome = (True, await _await_with_timeout(request))  # type: ignore[arg-type]
            else:
                outcome = (True, call_with_thread_timeout(request))  # type: ignore[arg-type]
        except BaseException as exc:
            outcome = (False, exc)


async def _await_with_timeout(request: Call) -> Any:
    assert request.timeout is not None
    start = time.monotonic()
    try:
        # wait_for runs the body as its own task, so expiry cancels the body, not us.
        value = await asyncio.wait_for(request.fn(*request.args, **request.kwargs), request.timeout)
    except TimeoutError:
        if time.monotonic() - start >= request.timeout:
            raise request.timed_out() from None
        raise
    if time.monotonic() - start > request.timeout:
        # A body that blocked the loop past its deadline without awaiting is not
        # cancelled by wait_for; it must still not count as completed.
        raise request.timed_out()
    return value


def _inject(thread: threading.Thread, exc_type: type[BaseException]) -> None:
    if thread.ident is not None:
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), ctypes.py_object(exc_type))


def call_with_thread_timeout(request: Call) -> Any:
    """Run a sync call in a worker thread and give up on it after `request.timeout` seconds.

    On expiry `RunInterrupted` is injected into the worker thread, which stops Python
    code at its next bytecode; code blocked inside C (a long `time.sleep`, a socket read)
    is abandoned and its eventual result discarded. Either way the caller gets a timeout
    error at the deadline.
    """
    assert request.timeout is not None
    ctx = contextvars.copy_context()
    box: dict[str, Any] = {}
    done = threading.Event()
    lock = threading.Lock()

    def target() -> None:
        try:
            try:
                value = ctx.run(request.fn, *request.args, **request.kwargs)
                if inspect.isawaitable(value):
                    value = run_coro_sync(value)
                box["value"] = value
            except BaseException as exc:
                box["error"] = exc
            with lock:
                box["finished"] = True
            done.set()
        except RunInterrupted:  # injected after the body finished: nothing left to stop
            done.set()

    thread = threading.Thread(target=target, name="flowbus-timed-run", daemon=True)
    thread.start()
    if not done.wait(request.timeout):
        with lock:
            if not box.get("finished"):
                _inject(thread, RunInterrupted)
        raise request.timed_out()
    if "error" in box:
        raise box["error"]
    return box["value"]


# Each thread that runs async user code from sync code keeps one event loop of its
# own, reused for every call: a new loop per call is slow, and one loop shared by all
# threads deadlocks as soon as a coroutine on it blocks waiting for another one.
_thread_loops = threading.local()


def _thread_loop() -> asyncio.AbstractEventLoop:
    loop: asyncio.AbstractEventLoop | None = getattr(_thread_loops, "loop", None)
    if loop is None or loop.is_closed():
        loop = asyncio.new_event_loop()
        _thread_loops.loop = loop
        # Closed when the thread object goes away (or at exit), never left to the GC.
        weakref.finalize(threading.current_thread(), loop.close)
    return loop


def run_coro_sync(coro: Any) -> Any:
    """Run an awaitable to completion from sync code, keeping the caller's context."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        # Called from inside a running loop (sync code inside async code): that loop
        # cannot be re-entered, so run on a private loop in a helper thread.
        ctx = contextvars.copy_context()
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["value"] = ctx.run(asyncio.run, _as_coroutine(coro))
            except BaseException as exc:
                box["error"] = exc

        thread = threading.Thread(target=target, name="flowbus-nested-loop")
        thread.start()
        thread.join()
        if "error" in box:
            raise box["error"]
        return box["value"]
    loop = _thread_loop()
    task = loop.create_task(_as_coroutine(coro), context=contextvars.copy_context())
    try:
        return loop.run_until_complete(task)
    except BaseException:
        if not task.done():  # interrupted from outside (e.g. KeyboardInterrupt)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                loop.run_until_complete(task)
        raise


async def _as_coroutine(awaitable: Any) -> Any:
    return await awaitable
