"""The publishing side of `Task.delay`: calls from any thread share publish windows.

Each call hands its messages (the run's record and job) to the process's
:class:`DelayQueue` and waits until JetStream has acknowledged them, so a run is
stored before ``delay`` returns. Calls made before the connection's loop gets to
them are published together in one window: one wake-up of that loop, one socket
write and one ack wait per window instead of per call. Windows do not wait for each
other. A refused message fails only the call it belongs to.
"""

from __future__ import annotations

import threading
import weakref
from collections import deque
from typing import Any

from events.background import Message
from events.errors import FlowbusError

# The calls one window carries at most (a window of messages is further split by the
# bus's own in-flight limit).
MAX_CALLS_PER_WINDOW = 256


class _Call:
    """One call's messages and its outcome; its caller blocks on ``done`` (a lock held
    until the loop has the outcome: cheaper to hand over than a Future's condition)."""

    __slots__ = ("done", "error", "messages")

    def __init__(self, messages: list[Message]) -> None:
        self.messages = messages
        self.error: BaseException | None = None
        self.done = threading.Lock()
        self.done.acquire()

    def finish(self, error: BaseException | None = None) -> None:
        self.error = error
        self.done.release()


class DelayQueue:
    """Publishes the queued calls of one server connection (a `flowbus._remote.Remote`)."""

    def __init__(self, remote: Any) -> None:
        self._remote = remote
        self._lock = threading.Lock()
        self._pending: deque[_Call] = deque()
        self._scheduled = False  # a drain is queued on the loop and has not run yet

    def publish(self, messages: list[Message], timeout: float) -> None:
        """Publish ``messages`` with the other calls of this moment; raise the error
        JetStream or the connection gave for them."""
        call = _Call(messages)
        with self._lock:
            self._pending.append(call)
            start, self._scheduled = not self._scheduled, True
        if start:
            try:
                self._remote.submit(self._drain())
            except BaseException:
                with self._lock:
                    self._scheduled = False
                raise
        if not call.done.acquire(timeout=timeout):
            raise TimeoutError(f"JetStream did not acknowledge the run within {timeout} s")
        if call.error is not None:
            raise call.error

    async def _drain(self) -> None:
        # Takes what is queued when it runs; calls queued after that start another
        # window, so windows overlap rather than wait for each other's acks.
        with self._lock:
            count = min(len(self._pending), MAX_CALLS_PER_WINDOW)
            batch = [self._pending.popleft() for _ in range(count)]
            self._scheduled = bool(self._pending)
        if self._scheduled:
            self._remote.submit(self._drain())
        if not batch:
            return
        flat = [m for call in batch for m in call.messages]
        try:
            outcomes = await self._remote.bus.publish_raw_each(flat)
        except BaseException as exc:  # every call of the window learns why
            for call in batch:
                call.finish(exc)
            raise
        index = 0
        for call in batch:
            mine = outcomes[index:index + len(call.messages)]
            index += len(call.messages)
            call.finish(next((o for o in mine if isinstance(o, FlowbusError)), None))


_queues: weakref.WeakKeyDictionary[Any, DelayQueue] = weakref.WeakKeyDictionary()
_queues_lock = threading.Lock()


def delay_queue(remote: Any) -> DelayQueue:
    """The queue of ``remote`` (one per connection)."""
    with _queues_lock:
        queue = _queues.get(remote)
        if queue is None:
            queue = _queues[remote] = DelayQueue(remote)
        return queue


__all__ = ["DelayQueue", "delay_queue"]
