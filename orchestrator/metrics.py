"""Prometheus metrics of the orchestrator (prefix ``flowbus_orchestrator_``)."""

from __future__ import annotations

from collections import deque
from contextvars import ContextVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# perf_counter() of each job published while handling the current event (one list per task).
JOB_TIMES: ContextVar[list[float] | None] = ContextVar("flowbus_job_times", default=None)


# Milliseconds to hours: an event is matched in a millisecond, a queued run may wait hours.
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0)


class Metrics:
    """One set of metrics per orchestrator (own registry, so tests can run several)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.events = Counter("flowbus_orchestrator_events_total", "events handled", ["outcome"], registry=r)
        self.firings = Counter("flowbus_orchestrator_trigger_firings_total", "triggers fired", ["kind"], registry=r)
        self.runs = Counter(
            "flowbus_orchestrator_flow_runs_total", "flow runs created or found", ["origin", "result"], registry=r
        )
        self.failures = Counter(
            "flowbus_orchestrator_action_failures_total",
            "runs not created and firings failed (when_over_budget: a 'when' over its budget)", ["reason"], registry=r
        )
        self.transitions = Counter(
            "flowbus_orchestrator_transitions_total", "runs moved by the orchestrator", ["state"], registry=r
        )
        self.evaluations = Counter(
            "flowbus_orchestrator_trigger_evaluations_total",
            "trigger leaves an event was evaluated against (what the index let through)", registry=r,
        )
        self.latency = Histogram(
            "flowbus_orchestrator_event_to_job_seconds", "event fetched to its run's job published",
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.consumer_pending = Gauge(
            "flowbus_orchestrator_consumer_pending", "events in the stream not yet delivered to it",
            registry=r,
        )
        self.consumer_ack_pending = Gauge(
            "flowbus_orchestrator_consumer_ack_pending", "events delivered and not yet acknowledged",
            registry=r,
        )
        self.slots_in_use = Gauge(
            "flowbus_orchestrator_concurrency_slots_in_use", "concurrency slots held by runs", registry=r
        )
        self.runs_waiting = Gauge(
            "flowbus_orchestrator_runs_waiting_for_slot", "runs in AwaitingConcurrencySlot", registry=r
        )
        self.limit_slots_in_use = Gauge(
            "flowbus_concurrency_limit_slots_in_use", "slots of a named concurrency limit held now",
            ["limit"], registry=r,
        )
        self.limit_waiters = Gauge(
            "flowbus_concurrency_limit_waiters", "holders waiting for a slot of a named limit",
            ["limit"], registry=r,
        )
        self.control_requests = Counter(
            "flowbus_orchestrator_control_requests_total",
            "flow-run control requests (the API's cancel and resume) carried out or refused",
            ["action", "outcome"], registry=r,
        )
        self.in_flight = Gauge("flowbus_orchestrator_in_flight", "events being handled", registry=r)
        self.triggers = Gauge("flowbus_orchestrator_triggers", "deployment triggers indexed", registry=r)
        self.tracked = Gauge("flowbus_orchestrator_tracked_runs", "non-final runs watched", registry=r)
        self.leader = Gauge("flowbus_orchestrator_leader", "1 while this instance leads", registry=r)
        # The latest event-to-job latencies in seconds, for the benchmark's percentiles.
        self.latency_samples: deque[float] = deque(maxlen=100_000)
        # The same from the moment JetStream stored the event (its timestamp).
        self.stored_latency_samples: deque[float] = deque(maxlen=100_000)
