"""Prometheus metrics of the sources (prefix ``flowbus_source_``), label ``source`` (bounded
by the number of definitions; a deleted source's series are removed) or ``kind``."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class SourceMetrics:
    """Counters, gauges and latencies of every source run by this gateway."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.messages_in = Counter("flowbus_source_messages_in_total",
                                   "messages received from the broker", ["source"], registry=r)
        self.events_out = Counter("flowbus_source_events_out_total",
                                  "events stored in the events stream", ["source"], registry=r)
        self.duplicates = Counter("flowbus_source_events_duplicate_total",
                                  "redelivered messages whose event was already stored",
                                  ["source"], registry=r)
        self.mapping_failures = Counter("flowbus_source_mapping_failures_total",
                                        "messages that went to the dead letters", ["source"],
                                        registry=r)
        self.dead_letters_dropped = Counter(
            "flowbus_source_dead_letters_dropped_total",
            "failed messages dropped because the dead-letter list was full", ["source"], registry=r)
        self.connection_errors = Counter("flowbus_source_connection_errors_total",
                                         "failed or lost broker connections", ["source"],
                                         registry=r)
        self.connected = Gauge("flowbus_source_connected",
                               "1 while connected to the broker, else 0", ["source"], registry=r)
        self.lag = Gauge("flowbus_source_lag_messages",
                         "messages waiting at the broker, where it says so", ["source"],
                         registry=r)
        self.buffered = Gauge("flowbus_source_buffered_messages",
                              "messages received and not yet stored", ["source"], registry=r)
        self.latency = Histogram(
            "flowbus_source_store_seconds", "time from receiving a message to its event stored",
            ["kind"], registry=r,
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 5),
        )

    def forget(self, source: str) -> None:
        """Drop a deleted source's series."""
        for metric in (self.messages_in, self.events_out, self.duplicates, self.mapping_failures,
                       self.dead_letters_dropped, self.connection_errors, self.connected,
                       self.lag, self.buffered):
            try:
                metric.remove(source)
            except KeyError:
                continue
