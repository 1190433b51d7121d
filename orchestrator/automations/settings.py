"""Settings of the automations engine (``FLOWBUS_AUTOMATIONS_*``), read once at start-up."""

from __future__ import annotations

import ipaddress
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from events.settings import register
from orchestrator.automations.targets import DEFAULT_DENIED


@register
class AutomationSettings(BaseSettings):
    """How automations fire and how their actions are delivered."""

    model_config = SettingsConfigDict(env_prefix="FLOWBUS_AUTOMATIONS_", extra="forbid", frozen=True)

    max_firings_per_minute: int = Field(
        default=120, gt=0, le=1_000_000,
        description="firings one automation may have per minute; more are dropped (loop safety net)",
    )
    action_attempts: int = Field(
        default=3, ge=1, le=20, description="attempts of an action (other than call-webhook) before dead-lettering"
    )
    retry_base_seconds: float = Field(default=0.2, gt=0, le=60, description="first retry delay")
    retry_max_seconds: float = Field(default=5, gt=0, le=300, description="longest retry delay")
    http_timeout_seconds: float = Field(default=10, gt=0, le=120, description="notification HTTP timeout")
    max_dead_letters: int = Field(default=10_000, gt=0, description="dead letters kept; older ones go first")
    max_pending_flow_control: int = Field(
        default=10_000, gt=0, description="debounce/batch/throttle buckets waiting in memory"
    )
    denied_networks: Annotated[list[str], NoDecode] = Field(
        default=list(DEFAULT_DENIED),
        description="networks webhooks and notifications may not reach (comma-separated CIDRs); "
        "the default denies loopback, private, link-local and cloud metadata addresses",
    )
    allowed_networks: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="exceptions to denied_networks (comma-separated CIDRs), e.g. an internal "
        "receiver's 10.1.2.0/24; flowbus dev allows loopback and private networks",
    )
    heartbeat_seconds: float = Field(
        default=5, gt=0, le=60,
        description="while an action runs, tell JetStream this often that its event is in progress",
    )
    result_max_bytes: int = Field(
        default=1024 * 1024, gt=0, description="largest flow-run result loaded into templates"
    )

    @field_validator("denied_networks", "allowed_networks", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("denied_networks", "allowed_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for network in value:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ValueError(f"{network!r} is not a network (CIDR), e.g. 10.0.0.0/8") from None
        return value
