"""Prometheus metrics of automations (prefix ``flowbus_automation_``), in the orchestrator's registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from events.automation_actions import ACTION_NAMES


class AutomationMetrics:
    """Counters and latencies of firings and actions (labels: bounded sets)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.firings = Counter(
            "flowbus_automation_firings_total", "automation firings", ["outcome"], registry=r
        )
        self.actions = Counter(
            "flowbus_automation_actions_total", "actions run", ["action", "outcome"], registry=r
        )
        self.latency = Histogram(
            "flowbus_automation_action_seconds", "time to run one action (retries included)",
            ["action"], buckets=(0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0),
            registry=r,
        )
        self.automations = Gauge("flowbus_automation_definitions", "automations enabled", registry=r)
        self.dead_letters_waiting = Gauge(
            "flowbus_automation_dead_letters_waiting", "dead letters waiting for redrive or purge", registry=r
        )
        self.pending = Gauge(
            "flowbus_automation_flow_control_pending", "debounce/batch/throttle buckets waiting", registry=r
        )
        self.dead_letters = Counter(
            "flowbus_automation_dead_letters_total", "actions dead-lettered", registry=r
        )
        for name in ACTION_NAMES:  # make every series visible from the start
            self.latency.labels(name)
