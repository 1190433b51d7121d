"""A flush waits for what its caller handed over, not for other producers' later items.

Many runs share one sink in an inline runner: each run's end flushes, and the buffer
is rarely empty while the others run.
"""

from __future__ import annotations

import threading
from typing import Any

from flowbus._sink import BufferedSink


def test_flush_returns_once_earlier_items_are_published_while_later_ones_wait() -> None:
    first_may_go = threading.Event()
    later_may_go = threading.Event()
    published: list[str] = []
    sink: BufferedSink

    def publish(batch: list[dict[str, Any]]) -> None:
        for item in batch:
            if item["name"] == "mine":
                first_may_go.wait(10)
                # Another producer hands over an item while ours is being published.
                sink.emit_event({"name": "theirs"})
            else:
                later_may_go.wait(10)
            published.append(item["name"])

    sink = BufferedSink(publish, batch_size=1)
    try:
        sink.emit_event({"name": "mine"})
        threading.Timer(0.5, first_may_go.set).start()
        sink.flush()
        assert published == ["mine"]  # "theirs" came later: the flush did not wait for it
    finally:
        later_may_go.set()
        sink.close()
    assert published == ["mine", "theirs"]


def test_flush_counts_a_failed_publish_as_done() -> None:
    def publish(batch: list[dict[str, Any]]) -> None:
        raise RuntimeError("transport down")

    sink = BufferedSink(publish)
    try:
        sink.emit_event({"name": "lost"})
        sink.flush()  # returns: the batch was dropped (counted), not left pending
        assert sink.error_count == 1
    finally:
        sink.close()
