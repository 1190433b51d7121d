"""The event sink of a process that executes runs for a runner.

The runner owns the flow-run record and announces its every state change
(``flowbus.flow-run.<State>`` with the record as data), so the engine's own events
for the top-level run would say the same thing twice: :class:`RecordedRunsFilter`
drops those and passes everything else (task runs, subflows, logs). In a worker,
:class:`StreamToLogs` turns what user code writes to stdout/stderr into log lines
of the run under way.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from typing import Any

from events.logrecords import run_log_record
from flowbus import _sink

MAX_LINE = 16 * 1024


class RecordedRunsFilter:
    """An event sink that drops the engine's events for runs whose record a runner writes."""

    def __init__(self, inner: Any, publisher: Any = None) -> None:
        self.inner = inner
        self._publisher = publisher
        self._owned: set[str] = set()
        self._lock = threading.Lock()

    @property
    def publisher(self) -> Any:
        """The NATS publisher behind the sink (None for a sink without one)."""
        return self._publisher

    def own(self, flow_run_id: str) -> None:
        with self._lock:
            self._owned.add(f"flowbus.flow-run.{flow_run_id}")

    def release(self, flow_run_id: str) -> None:
        with self._lock:
            self._owned.discard(f"flowbus.flow-run.{flow_run_id}")

    def emit_event(self, event: dict[str, Any]) -> None:
        if event.get("subject") in self._owned and str(event.get("type", "")).startswith(
            "flowbus.flow-run."
        ):
            return
        self.inner.emit_event(event)

    def emit_log(self, record: dict[str, Any]) -> None:
        self.inner.emit_log(record)

    def flush(self) -> None:
        self.inner.flush()

    def close(self) -> None:
        self.inner.close()
        if self._publisher is not None:
            self._publisher.close()

    @property
    def published_count(self) -> int:
        return int(getattr(self.inner, "published_count", 0))

    @property
    def error_count(self) -> int:
        return int(getattr(self.inner, "error_count", 0))


class StreamToLogs(io.TextIOBase):
    """A text stream whose complete lines become log records of the current run.

    Lines written outside a run go to ``fallback`` (the process's real stream).
    """

    def __init__(self, name: str, level: int, current_run: Callable[[], str | None],
                 fallback: Any) -> None:
        self._name = name
        self._level = level
        self._current_run = current_run
        self._fallback = fallback
        self._buffer: list[str] = []
        self._size = 0
        self._lock = threading.Lock()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        with self._lock:
            self._buffer.append(text)
            self._size += len(text)
            if "\n" in text or self._size > MAX_LINE:
                self._drain(final=False)
        return len(text)

    def flush(self) -> None:
        with self._lock:
            self._drain(final=True)

    def _drain(self, *, final: bool) -> None:
        data = "".join(self._buffer)
        lines = data.split("\n")
        rest = "" if final else lines.pop()
        if len(rest) > MAX_LINE:
            lines.append(rest)
            rest = ""
        self._buffer = [rest] if rest else []
        self._size = len(rest)
        for line in lines:
            if line:
                self._emit(line[:MAX_LINE])

    def _emit(self, line: str) -> None:
        run_id = self._current_run()
        if run_id is None or not _sink.enabled:
            self._fallback.write(line + "\n")
            return
        _sink.emit_log_record(run_log_record(flow_run_id=run_id, name=self._name,
                                             level=self._level, message=line))


def open_nats_sink(settings: Any, maxsize: int) -> RecordedRunsFilter:
    """A filtered, buffered sink publishing to NATS, with its own connection.

    Unlike the SDK's environment-configured sink, its owner closes it (connection
    included) instead of leaving that to interpreter exit. Raises
    :class:`~events.errors.BusUnavailable` when NATS cannot be reached.
    """
    from flowbus._nats_sink import NatsPublisher

    publisher = NatsPublisher(settings)
    inner = _sink.BufferedSink(publisher.publish_events, maxsize,
                               publish_logs=publisher.publish_logs)
    return RecordedRunsFilter(inner, publisher)
