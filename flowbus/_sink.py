"""Where the engine's events and log records go.

Every flow-run and task-run state change and every run log record is handed to the
process-wide event sink. With no server the sink is a `NullSink` and the engine skips
building events altogether (it checks `enabled` first). A transport plugs in with
`set_event_sink`, typically a `BufferedSink` wrapping its publish function::

    from flowbus._sink import BufferedSink, set_event_sink

    set_event_sink(BufferedSink(publish=my_publish_batch, maxsize=10_000))

Event dicts are CloudEvents 1.0 (structured mode); log dicts are
:class:`events.logrecords.RunLogRecord` (numeric ``level``).
"""

from __future__ import annotations

import atexit
import collections
import datetime as _dt
import json
import logging
import os
import sys
import threading
import uuid
from collections.abc import Callable
from typing import Any, Protocol, cast, runtime_checkable

from events.logrecords import RunLogRecord

SOURCE = "flowbus/sdk"

_log = logging.getLogger("flowbus.sink")


@runtime_checkable
class EventSink(Protocol):
    """Receives engine events and log records. Must be thread-safe and must not block long."""

    def emit_event(self, event: dict[str, Any]) -> None: ...

    def emit_log(self, record: dict[str, Any]) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class NullSink:
    """Keeps nothing. The engine does not even build events while it is installed."""

    def emit_event(self, event: dict[str, Any]) -> None:
        pass

    def emit_log(self, record: dict[str, Any]) -> None:
        pass

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class JsonLinesSink:
    """Appends each event and log record as one JSON line to a file.

    Log records are wrapped as ``{"log": record}`` so one file can hold both kinds.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._lock = threading.Lock()
        self._file = open(self.path, "a", encoding="utf-8")

    def _write(self, item: dict[str, Any]) -> None:
        line = json.dumps(item, default=str) + "\n"
        with self._lock:
            if not self._file.closed:
                self._file.write(line)
                self._file.flush()

    def emit_event(self, event: dict[str, Any]) -> None:
        self._write(event)

    def emit_log(self, record: dict[str, Any]) -> None:
        self._write({"log": record})

    def flush(self) -> None:
        with self._lock:
            if not self._file.closed:
                self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()


class BufferedSink:
    """Hands events off the hot path to a background thread that publishes in batches.

    The buffer is bounded by `maxsize`: when it is full, the producer blocks until the
    publisher catches up (backpressure) and `backpressure_count` goes up by one, so the
    buffer never grows without bound. `publish` receives a list of event dicts;
    `publish_logs` (default: `publish`) a list of log dicts. A failing publish is logged
    and counted in `error_count`; the batch is dropped, the sink carries on.

    Example::

        sink = BufferedSink(publish=lambda batch: print(len(batch)), maxsize=1000)
        set_event_sink(sink)
        ...
        sink.close()  # flushes what is left
    """

    def __init__(
        self,
        publish: Callable[[list[dict[str, Any]]], None],
        maxsize: int = 10_000,
        *,
        publish_logs: Callable[[list[dict[str, Any]]], None] | None = None,
        batch_size: int = 512,
    ) -> None:
        if maxsize <= 0:
            raise ValueError(f"BufferedSink maxsize must be > 0, got {maxsize}")
        if batch_size <= 0:
            raise ValueError(f"BufferedSink batch_size must be > 0, got {batch_size}")
        self.publish = publish
        self.publish_logs = publish_logs or publish
        self.maxsize = maxsize
        self.batch_size = batch_size
        self.backpressure_count = 0
        self.error_count = 0
        self.published_count = 0
        # A deque under one condition: cheaper than queue.Queue's per-item locking,
        # and the publisher takes a whole batch per wake-up.
        self._items: collections.deque[tuple[bool, dict[str, Any]]] = collections.deque()
        self._cond = threading.Condition(threading.Lock())
        self._in_flight = 0
        # Items handed over so far, and items the publisher is done with (published
        # or dropped): a flush waits for its own watermark, not for an empty buffer.
        self._handed = 0
        self._settled = 0
        self._producers_waiting = 0
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="flowbus-sink", daemon=True)
        self._thread.start()

    @property
    def fill(self) -> int:
        """How many items wait in the buffer (a metric)."""
        return len(self._items)

    def _put(self, item: tuple[bool, dict[str, Any]]) -> None:
        with self._cond:
            if self._closed:
                raise RuntimeError("BufferedSink is closed; install a new sink with set_event_sink")
            if len(self._items) >= self.maxsize:
                self.backpressure_count += 1
                self._producers_waiting += 1
                while len(self._items) >= self.maxsize:
                    self._cond.wait()
                self._producers_waiting -= 1
            self._items.append(item)
            self._handed += 1
            if len(self._items) == 1:
                self._cond.notify_all()

    def emit_event(self, event: dict[str, Any]) -> None:
        self._put((True, event))

    def emit_log(self, record: dict[str, Any]) -> None:
        self._put((False, record))

    def _run(self) -> None:
        items = self._items
        while True:
            with self._cond:
                while not items and not self._closed:
                    self._cond.wait()
                if not items and self._closed:
                    return
                batch = [items.popleft() for _ in range(min(len(items), self.batch_size))]
                self._in_flight = len(batch)
                if self._producers_waiting:
                    self._cond.notify_all()
            self._publish(self.publish, [item for is_event, item in batch if is_event])
            self._publish(self.publish_logs, [item for is_event, item in batch if not is_event])
            with self._cond:
                self._in_flight = 0
                self._settled += len(batch)
                self._cond.notify_all()

    def _publish(self, fn: Callable[[list[dict[str, Any]]], None], items: list[dict[str, Any]]) -> None:
        if not items:
            return
        try:
            fn(items)
            self.published_count += len(items)
        except Exception as exc:  # a broken transport must not kill the publisher thread
            self.error_count += 1
            print(f"flowbus: event publish failed, {len(items)} dropped: {exc!r}", file=sys.stderr)

    def flush(self) -> None:
        """Block until everything handed over so far has been published.

        Items handed over after the call are not waited for: with many producers (an
        inline runner's concurrent runs share one sink) the buffer is rarely empty, and
        waiting for that would hold each flush for the others' items.
        """
        with self._cond:
            mark = self._handed
            while self._settled < mark and self._thread.is_alive():
                self._cond.wait(0.1)

    def close(self) -> None:
        """Publish what is left and stop the background thread."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        self._thread.join()


# The sink in use, and whether it is worth building events for. The engine reads
# `enabled` on every transition, so it is a plain module global.
_sink: EventSink = NullSink()
enabled = False
_configured = False
_atexit_registered = False
_lock = threading.Lock()


def set_event_sink(sink: EventSink | None) -> EventSink:
    """Install `sink` for the whole process (None: the null sink). Returns the previous one.

    The previous sink is not closed; the caller owns it.
    """
    global _sink, enabled, _configured, _atexit_registered
    with _lock:
        previous = _sink
        _sink = sink if sink is not None else NullSink()
        enabled = not isinstance(_sink, NullSink)
        _configured = True
        if enabled and not _atexit_registered:
            # Publish what is buffered when the process ends normally.
            atexit.register(flush_event_sink)
            _atexit_registered = True
    return previous


def sink_chosen() -> bool:
    """Whether this process's sink is decided: installed, or read from the environment."""
    return _configured


def forget_event_sink() -> None:
    """Back to no sink chosen: the null sink now, the environment read at the next use."""
    global _configured
    set_event_sink(None)
    with _lock:
        _configured = False


def get_event_sink() -> EventSink:
    """The sink in use, configuring it from the environment on first use."""
    configure_from_env()
    return _sink


def configure_from_env() -> None:
    """Pick the sink from the environment once: ``FLOWBUS_EVENTS_FILE`` -> `JsonLinesSink`.

    A sink installed with `set_event_sink` always wins.
    """
    global _configured
    if _configured:
        return
    with _lock:
        if _configured:
            return
        path = os.environ.get("FLOWBUS_EVENTS_FILE")
        nats_url = os.environ.get("FLOWBUS_NATS_URL")
        _configured = True
    if nats_url:
        sink = _nats_sink(nats_url)
        if sink is not None:
            set_event_sink(sink)
            return
    if path:
        set_event_sink(JsonLinesSink(path))


def _nats_sink(url: str) -> EventSink | None:
    # Imported here: nats-py and pydantic load only when a server is configured.
    from flowbus._nats_sink import nats_event_sink

    return nats_event_sink(url)


def flush_event_sink() -> None:
    """Flush the current sink (called at the end of every top-level flow run)."""
    if enabled:
        _sink.flush()


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat()


def emit_state_event(kind: str, run_id: str, state_name: str, data: dict[str, Any]) -> None:
    """Build and emit one ``flowbus.<kind>.<State>`` CloudEvent (kind: flow-run, task-run)."""
    _sink.emit_event(
        {
            "specversion": "1.0",
            "type": f"flowbus.{kind}.{state_name}",
            "source": SOURCE,
            "subject": f"flowbus.{kind}.{run_id}",
            "id": str(uuid.uuid4()),
            "time": _now(),
            "datacontenttype": "application/json",
            "data": data,
        }
    )


def emit_event(type: str, subject: str, data: dict[str, Any]) -> None:
    """Emit any other SDK event (e.g. ``flowbus.artifact.created``)."""
    if not enabled:
        return
    _sink.emit_event(
        {
            "specversion": "1.0",
            "type": type,
            "source": SOURCE,
            "subject": subject,
            "id": str(uuid.uuid4()),
            "time": _now(),
            "datacontenttype": "application/json",
            "data": data,
        }
    )


def emit_log_record(record: RunLogRecord) -> None:
    # A TypedDict is a dict at run time; the sinks take records as plain dicts.
    _sink.emit_log(cast(dict[str, Any], record))
