"""The runner's settings: which pool it serves, how many runs at once, and how.

Read once at start-up (``FLOWBUS_RUNNER_*`` variables, or the ``flowbus runner``
flags) and passed in explicitly.
"""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from events.settings import register, register_names

# Read by the SDK in the workers (the console level of run logs); a runner accepts it.
register_names(["FLOWBUS_LOGGING_LEVEL"])


def _default_runner_id() -> str:
    return f"{socket.gethostname()[:40]}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@register
class RunnerSettings(BaseSettings):
    """How one runner takes and executes flow-run jobs."""

    model_config = SettingsConfigDict(env_prefix="FLOWBUS_RUNNER_", extra="forbid", frozen=True)

    pool: str = Field(
        default="default", pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="work pool whose jobs (<ns>.runs.<pool>) this runner takes",
    )
    limit: int = Field(default=4, ge=1, le=1024, description="flow runs executed at once")
    isolation: Literal["process", "inline"] = Field(
        default="process",
        description="'process': warm worker processes; 'inline': in the runner's own process",
    )
    worker_max_runs: int = Field(
        default=100, ge=1, description="a worker process is replaced after this many runs"
    )
    worker_max_memory_mb: int | None = Field(
        default=None, ge=16, description="a worker whose resident memory passes this is killed"
    )
    drain_timeout: float = Field(
        default=30.0, ge=0, description="seconds running flows get to finish after SIGTERM"
    )
    heartbeat_interval: float = Field(
        default=2.0, gt=0, description="seconds between in-progress acks and record updates"
    )
    worker_lease: float | None = Field(
        default=None, gt=0,
        description="seconds a worker runs on without hearing from its runner before it "
                    "stops itself (None: 3 x heartbeat_interval)",
    )
    ack_wait: float = Field(
        default=10.0, gt=0,
        description="seconds without a heartbeat before JetStream redelivers a job "
                    "(bounds how fast a crashed run is retried)",
    )
    fetch_wait: float = Field(
        default=1.0, gt=0, le=30, description="longest wait of one fetch for new jobs"
    )
    timeout_grace: float = Field(
        default=2.0, ge=0, description="seconds past a flow's timeout before its worker is killed"
    )
    result_max_bytes: int = Field(
        default=8 * 1024 * 1024, gt=0, description="largest result persisted to the object store"
    )
    log_buffer: int = Field(
        default=10_000, gt=0, description="log records buffered per process before back-pressure"
    )
    runner_id: str = Field(
        default_factory=_default_runner_id, min_length=1, max_length=128,
        description="identity written into the records of the runs this runner holds",
    )
    metrics_port: int | None = Field(
        default=None, ge=0, le=65535, description="port of /metrics (None: no HTTP server)"
    )
    metrics_host: str = Field(default="127.0.0.1", description="address /metrics listens on")
    code_root: Path = Field(
        default_factory=Path.cwd,
        description="directory entrypoints of deployments without a code bundle resolve in",
    )

    @model_validator(mode="after")
    def _fencing_timings(self) -> RunnerSettings:
        # docs/runners.md, "Fencing": a worker is provably gone before anyone may
        # take its run over, and a healthy runner renews its lease twice per lease.
        if self.lease < 2 * self.heartbeat_interval:
            raise ValueError(
                f"worker_lease ({self.lease}s) must be at least 2 x heartbeat_interval "
                f"({self.heartbeat_interval}s), or a healthy worker would stop itself"
            )
        if self.ack_wait < self.stale_after:
            raise ValueError(
                f"ack_wait ({self.ack_wait}s) must be at least worker_lease + "
                f"heartbeat_interval ({self.stale_after}s), or a run could be taken over "
                "while its worker may still be running"
            )
        return self

    @property
    def lease(self) -> float:
        """How long a worker runs on after its runner's last successful heartbeat."""
        return self.worker_lease if self.worker_lease is not None else 3 * self.heartbeat_interval

    @property
    def stale_after(self) -> float:
        """A held run whose record was not touched for this long belongs to a dead runner.

        Longer than the worker lease (plus the worker's lease check period), so the
        attempt's worker has stopped itself by then.
        """
        return self.lease + self.heartbeat_interval

    @property
    def consumer_name(self) -> str:
        """The durable consumer every runner of the pool shares (the stream is a work queue)."""
        return f"pool-{self.pool}"
