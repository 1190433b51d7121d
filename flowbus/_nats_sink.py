"""Publish the engine's run events and logs to NATS, off the hot path.

Chosen when ``FLOWBUS_NATS_URL`` is set (or installed explicitly by a runner):
a :class:`~flowbus._sink.BufferedSink` whose background thread hands each batch to
a :class:`~events.bus.Bus` living on an event loop of its own, so user code only
pays the buffer's hand-off. Events become CloudEvents on ``<ns>.events.<type>``;
logs go to ``<ns>.logs.<flow-run-id>`` as JSON arrays (docs/contract.md); those of a task
run outside a flow (a background run) to ``<ns>.logs.<task-run-id>``.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import logging
import threading
from collections import defaultdict
from typing import Any

from events.bus import Bus
from events.cloudevent import from_dict
from events.errors import FlowbusError
from events.layout import Layout
from events.settings import NatsSettings
from flowbus._sink import BufferedSink
from flowbus._sink_metrics import count_states

_log = logging.getLogger("flowbus.sink")
_PUBLISH_TIMEOUT = 30.0


class NatsPublisher:
    """A bus on a private event loop thread, callable from any thread."""

    def __init__(self, settings: NatsSettings) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="flowbus-nats",
                                        daemon=True)
        self._thread.start()
        self.bus: Bus = self._call(Bus.connect(settings, name="flowbus-sdk"))

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(_PUBLISH_TIMEOUT)

    def run(self, coro: Any) -> Any:
        """Run ``coro`` (using :attr:`bus`) on the publisher's loop; its result, bounded."""
        return self._call(coro)

    def publish_events(self, batch: list[dict[str, Any]]) -> None:
        events = [from_dict(item) for item in batch]
        self._call(self.bus.publish_many(events))
        count_states(batch)

    def publish_logs(self, batch: list[dict[str, Any]]) -> None:
        self._call(self.bus.publish_raw_many(log_messages(self.bus.layout, batch)))

    def close(self) -> None:
        if self._loop.is_closed():
            return
        try:
            self._call(self.bus.close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
            self._loop.close()


def log_messages(layout: Layout, batch: list[dict[str, Any]]
                 ) -> list[tuple[str, bytes, dict[str, str] | None]]:
    """The messages of a batch of log records: one JSON array per run, in order."""
    by_run: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in batch:
        # A task run outside a flow (a background run) has a subject of its own.
        by_run[record.get("flow_run_id") or record.get("task_run_id") or "none"].append(record)
    return [(layout.logs_subject(run_id), json.dumps(records, default=str).encode(), None)
            for run_id, records in by_run.items()]


class NatsSink(BufferedSink):
    """A buffered sink whose close also closes its NATS connection."""

    def __init__(self, publisher: NatsPublisher, maxsize: int) -> None:
        super().__init__(publisher.publish_events, maxsize, publish_logs=publisher.publish_logs)
        self._publisher = publisher

    def close(self) -> None:
        super().close()
        self._publisher.close()


def nats_event_sink(
    target: str | NatsSettings | None = None, *, maxsize: int = 10_000
) -> NatsSink | None:
    """A buffered sink publishing to NATS, or None (with a warning) if NATS is unreachable.

    ``target`` is a URL (other settings from the environment), full settings, or
    None for the environment alone.
    """
    if isinstance(target, NatsSettings):
        settings = target
    else:
        settings = NatsSettings() if target is None else NatsSettings(nats_url=[target])
    try:
        publisher = NatsPublisher(settings)
    except FlowbusError as exc:
        _log.warning("FLOWBUS_NATS_URL is set but %s; run events stay local.", exc)
        return None
    sink = NatsSink(publisher, maxsize)
    atexit.register(sink.close)
    return sink
