"""Prometheus view of the SDK's event sink: what the engine published, and how full
the hand-off buffer is. Read at scrape time from the live sink, so the hot path pays
nothing for it. Served by the runner's ``/metrics`` (and any process that renders
:data:`REGISTRY`).
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from flowbus._sink import BufferedSink, get_event_sink

# (kind, state) -> state events published, e.g. ("task-run", "Completed"); filled by the
# NATS publisher, which sees every batch anyway.
PUBLISHED_STATES: Tally[tuple[str, str]] = Tally()


def count_states(batch: list[dict[str, object]]) -> None:
    for event in batch:
        kind, _, state = str(event.get("type", "")).removeprefix("flowbus.").partition(".")
        if kind in ("flow-run", "task-run") and state:
            PUBLISHED_STATES[(kind, state)] += 1


class SinkCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        task_runs = CounterMetricFamily("flowbus_sdk_task_runs", "task-run state changes published",
                                        labels=["state"])
        flow_runs = CounterMetricFamily("flowbus_sdk_flow_runs", "flow-run state changes published",
                                        labels=["state"])
        for (kind, state), n in sorted(PUBLISHED_STATES.items()):
            (task_runs if kind == "task-run" else flow_runs).add_metric([state], n)
        yield task_runs
        yield flow_runs
        sink = get_event_sink()
        if isinstance(sink, BufferedSink):
            yield GaugeMetricFamily("flowbus_sdk_event_buffer_fill",
                                    "events and logs waiting in the hand-off buffer", value=sink.fill)
            yield GaugeMetricFamily("flowbus_sdk_event_buffer_size", "the buffer's bound",
                                    value=sink.maxsize)
            yield CounterMetricFamily("flowbus_sdk_event_backpressure",
                                      "times user code waited for a full buffer",
                                      value=sink.backpressure_count)
            yield CounterMetricFamily("flowbus_sdk_publish_errors",
                                      "batches the sink failed to publish", value=sink.error_count)


REGISTRY = CollectorRegistry()
REGISTRY.register(SinkCollector())
