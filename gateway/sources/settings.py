"""The sources' settings (``FLOWBUS_SOURCES_*``): batching, bounds, backoff, secrets.

    SourcesSettings(backoff_max_seconds=5)
"""

from __future__ import annotations

import os
import socket

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from events.settings import register


def _default_gateway_id() -> str:
    return f"{socket.gethostname()[:40]}-{os.getpid()}"


@register
class SourcesSettings(BaseSettings):
    """How the gateway runs event sources."""

    model_config = SettingsConfigDict(env_prefix="FLOWBUS_SOURCES_", extra="forbid", frozen=True)

    enabled: bool = Field(default=True, description="run the enabled sources in this gateway")
    batch_max: int = Field(default=256, gt=0, le=10_000,
                           description="messages mapped and published together at most")
    queue_max: int = Field(default=1024, gt=0, le=1_000_000,
                           description="messages buffered per source before the broker is slowed")
    backoff_initial_seconds: float = Field(default=0.5, gt=0,
                                           description="first wait before reconnecting")
    backoff_max_seconds: float = Field(default=30.0, gt=0,
                                       description="longest wait between reconnection attempts")
    secret_env_prefix: str = Field(
        default="SOURCE_SECRET_", min_length=1,
        description="secret references may only name environment variables with this prefix",
    )
    secrets_dir: str | None = Field(
        default=None, description="directory holding secret files (file references); none: refused"
    )
    dead_letter_max: int = Field(default=10_000, gt=0,
                                 description="dead letters kept per source; more are dropped")
    drain_timeout_seconds: float = Field(
        default=10.0, gt=0, description="time in-flight messages get to be stored at shutdown"
    )
    gateway_id: str = Field(default_factory=_default_gateway_id, min_length=1, max_length=100,
                            description="this gateway's name in leases and status")

    @model_validator(mode="after")
    def _backoff_order(self) -> SourcesSettings:
        if self.backoff_initial_seconds > self.backoff_max_seconds:
            raise ValueError("backoff_initial_seconds must not exceed backoff_max_seconds")
        return self
