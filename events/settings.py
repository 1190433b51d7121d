"""Settings shared by every part: how to reach NATS and the event limits.

Each component has one settings object (pydantic-settings, ``FLOWBUS_`` prefix),
read once at start-up and passed in explicitly. Environment variables are matched
by name, so a misspelt ``FLOWBUS_NATS_ULR`` would be silently ignored;
:func:`check_environment` closes that hole by refusing any ``FLOWBUS_*`` variable
that no registered settings class (nor the SDK) knows.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Mapping
from typing import Annotated, TypeVar

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from events.errors import SettingsError
from events.subjects import check_namespace

_KNOWN_SETTINGS: list[type[BaseSettings]] = []
# Names read directly by the SDK (flowbus/) without a settings class, to keep its import cheap.
_KNOWN_NAMES: set[str] = {
    "FLOWBUS_HOME", "FLOWBUS_EVENTS_FILE", "FLOWBUS_API_URL", "FLOWBUS_API_KEY",
    "FLOWBUS_LOGGING_LEVEL", "FLOWBUS_TASK_RUNNER_MAX_WORKERS", "FLOWBUS_SECRETS_KEY",
    "FLOWBUS_LOCAL_STORAGE_PATH", "FLOWBUS_TASK_RUNNER_PROCESS_POOL_MAX_WORKERS",
    "FLOWBUS_DEFAULT_RESULT_STORAGE_BLOCK", "FLOWBUS_TASK_SCHEDULING_DEFAULT_STORAGE_BLOCK",
}

S = TypeVar("S", bound=type[BaseSettings])


def register(cls: S) -> S:
    """Class decorator: make a settings class's variables known to :func:`check_environment`."""
    _KNOWN_SETTINGS.append(cls)
    return cls


def register_names(names: Iterable[str]) -> None:
    """Declare ``FLOWBUS_*`` names read without a settings class."""
    _KNOWN_NAMES.update(names)


def known_names() -> set[str]:
    names = set(_KNOWN_NAMES)
    for cls in _KNOWN_SETTINGS:
        prefix = str(cls.model_config.get("env_prefix", ""))
        names.update(f"{prefix}{field}".upper() for field in cls.model_fields)
    return names


def check_environment(environ: Mapping[str, str] | None = None) -> None:
    """Raise :class:`SettingsError` naming every unknown ``FLOWBUS_*`` variable."""
    env = os.environ if environ is None else environ
    known = known_names()
    unknown = sorted(k for k in env if k.upper().startswith("FLOWBUS_") and k.upper() not in known)
    if not unknown:
        return
    hints = []
    for name in unknown:
        close = difflib.get_close_matches(name.upper(), known, n=1)
        hints.append(f"{name} (did you mean {close[0]}?)" if close else name)
    raise SettingsError(
        "unknown setting(s) in the environment: " + ", ".join(hints)
        + "; remove or correct them (see docs/configuration.md)"
    )


@register
class NatsSettings(BaseSettings):
    """How to reach NATS, where in it flowbus lives, and event limits."""

    model_config = SettingsConfigDict(env_prefix="FLOWBUS_", extra="forbid", frozen=True)

    nats_url: Annotated[list[str], NoDecode] = Field(
        default=["nats://127.0.0.1:4222"],
        description="NATS server URL(s); several are separated by commas",
    )
    nats_user: str | None = Field(default=None, description="user name for NATS")
    nats_password: str | None = Field(default=None, description="password for NATS")
    nats_token: str | None = Field(default=None, description="token for NATS")
    nats_creds: str | None = Field(default=None, description="path of a NATS credentials file")
    nats_tls_ca: str | None = Field(default=None, description="CA bundle to verify NATS' TLS")
    nats_tls_cert: str | None = Field(default=None, description="client certificate for TLS")
    nats_tls_key: str | None = Field(default=None, description="client key for TLS")
    nats_connect_timeout: float = Field(default=2.0, gt=0, description="seconds per connect try")
    nats_request_timeout: float = Field(default=5.0, gt=0, description="seconds to await an ack")
    namespace: str = Field(
        default="flowbus",
        description="prefix of every subject, stream and bucket; lets environments share NATS",
    )
    event_max_bytes: int = Field(
        default=1024 * 1024, gt=0, description="largest encoded event accepted"
    )
    events_max_age_days: float = Field(default=7, gt=0, description="how long events are kept")
    logs_max_age_days: float = Field(default=7, gt=0, description="how long logs are kept")
    dedup_window_seconds: float = Field(
        default=120, gt=0, description="window in which a re-sent (source, id) is dropped"
    )
    publish_max_in_flight: int = Field(
        default=512, gt=0, description="unacknowledged publishes allowed at once"
    )
    stream_replicas: int = Field(
        default=1, ge=1, le=5, description="JetStream replicas of every stream and bucket (3 in a cluster)"
    )
    lease_ttl_seconds: float = Field(
        default=10, gt=0, description="time-to-live of leader leases"
    )

    @field_validator("nats_url", mode="before")
    @classmethod
    def _split_urls(cls, value: object) -> object:
        if isinstance(value, str):
            return [u.strip() for u in value.split(",") if u.strip()]
        return value

    @field_validator("nats_url")
    @classmethod
    def _urls_not_empty(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one NATS URL is needed, e.g. nats://127.0.0.1:4222")
        return value

    @field_validator("namespace")
    @classmethod
    def _valid_namespace(cls, value: str) -> str:
        return check_namespace(value)


def nats_url_from_env() -> str | None:
    """``FLOWBUS_NATS_URL`` if set: the switch between local and server mode."""
    return os.environ.get("FLOWBUS_NATS_URL") or None
