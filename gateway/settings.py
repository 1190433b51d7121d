"""The gateway's settings: where it listens, auth, limits, rate limit, drain timeout.

Read once at start-up from ``FLOWBUS_GATEWAY_*`` variables (or passed in)::

    GatewaySettings(port=0, auth=False)
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from events.settings import register

MIB = 1024 * 1024


@register
class GatewaySettings(BaseSettings):
    """How the HTTP edge listens, authenticates and limits what it takes."""

    model_config = SettingsConfigDict(env_prefix="FLOWBUS_GATEWAY_", extra="forbid", frozen=True)

    host: str = Field(default="127.0.0.1", description="interface to listen on")
    port: int = Field(default=8080, ge=0, le=65535, description="TCP port (0: any free port)")
    workers: int = Field(
        default=1, ge=1, le=64,
        description="gateway processes sharing the port (SO_REUSEPORT), one core each",
    )
    auth: bool = Field(default=True, description="require API keys (Authorization: Bearer)")
    admin_api_key: SecretStr | None = Field(
        default=None,
        description="bootstrap key with the admin scope, to create the first managed keys",
    )
    event_max_bytes: int = Field(
        default=MIB, gt=0, description="largest encoded event accepted (413 beyond)"
    )
    request_max_bytes: int = Field(
        default=10 * MIB, gt=0, description="largest request body accepted (413 beyond)"
    )
    rate_limit_per_second: float = Field(
        default=1000.0, ge=0, description="sustained requests per second per API key (0: no limit)"
    )
    rate_limit_burst: int = Field(
        default=2000, gt=0, description="requests a key may make at once before the limit bites"
    )
    rate_limit_max_keys: int = Field(
        default=10_000, gt=0, description="API keys whose buckets are remembered (LRU)"
    )
    key_cache_seconds: float = Field(
        default=5.0, ge=0, description="how long a looked-up API key is trusted before re-reading"
    )
    retry_after_seconds: int = Field(
        default=2, ge=1, description="Retry-After sent with 503 when NATS cannot take an event"
    )
    drain_timeout_seconds: float = Field(
        default=10.0, gt=0, description="time in-flight requests get to finish at shutdown"
    )
    signature_tolerance_seconds: float = Field(
        default=300.0, gt=0, description="how old a signed webhook timestamp may be (replay)"
    )
    webhook_allowed_origins: Annotated[list[str], NoDecode] = Field(
        default=["*"],
        description="origins allowed by the CloudEvents webhook handshake (comma-separated)",
    )
    webhook_allowed_rate: int | None = Field(
        default=None, gt=0, description="requests per minute announced in WebHook-Allowed-Rate"
    )
    wait_max_seconds: float = Field(
        default=300.0, gt=0, description="longest ?wait= accepted when running a deployment"
    )
    streams_max_open: int = Field(
        default=256, gt=0, description="SSE, WebSocket and log-follow streams open at once (503 beyond)"
    )
    stream_heartbeat_seconds: float = Field(
        default=15.0, gt=0, description="keep-alive interval of event and log streams"
    )
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Host header names accepted (comma-separated, no port; empty: any); "
        "flowbus dev accepts only localhost names and loopback addresses",
    )

    @field_validator("webhook_allowed_origins", "allowed_hosts", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

    @field_validator("admin_api_key")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 24:
            raise ValueError("the admin API key must be at least 24 characters (use a random one)")
        return value
