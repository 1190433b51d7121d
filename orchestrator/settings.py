"""The orchestrator's settings (``FLOWBUS_ORCHESTRATOR_*``), read once at start-up."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from events.layout import ORCHESTRATOR_CONSUMER
from events.settings import register


@register
class OrchestratorSettings(BaseSettings):
    """How the orchestrator consumes, creates runs, and watches over them."""

    model_config = SettingsConfigDict(env_prefix="FLOWBUS_ORCHESTRATOR_", extra="forbid", frozen=True)

    consumer_name: str = Field(
        default=ORCHESTRATOR_CONSUMER, pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="durable consumer name on the events stream",
    )
    max_in_flight: int = Field(default=256, gt=0, le=10_000, description="events handled at once")
    fetch_wait_seconds: float = Field(default=0.5, gt=0, description="longest wait of one fetch")
    ack_wait_seconds: float = Field(default=30, gt=0, description="redelivery after this without ack")
    max_deliveries: int = Field(
        default=20, gt=0, description="attempts at an event that keeps failing before it is dropped "
        "(failures while NATS is unreachable or electing a leader do not count)"
    )
    drain_seconds: float = Field(default=10, ge=0, description="time given to in-flight events on stop")
    tick_seconds: float = Field(default=1.0, gt=0, description="period of schedule/late/crash checks")
    late_grace_seconds: float = Field(default=60, ge=0, description="Scheduled this long past start: Late")
    heartbeat_timeout_seconds: float = Field(
        default=90, gt=0, description="a Running run not updated for this long has Crashed, "
        "when its record does not carry its runner's stale period (inline isolation)"
    )
    slot_ttl_seconds: float = Field(default=60, gt=0, description="life of a concurrency slot lease")
    max_tracked_runs: int = Field(default=100_000, gt=0, description="non-final runs kept in memory")
    lease_renew_fraction: float = Field(
        default=0.3, gt=0, lt=1, description="renew the leader lease after this part of its TTL"
    )
    metrics_port: int | None = Field(
        default=None, ge=0, le=65535, description="serve /metrics on this port (None: do not)"
    )
    metrics_host: str = Field(default="127.0.0.1", description="address /metrics listens on")
