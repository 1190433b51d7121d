"""Resolving a source's secret references, within the limits the gateway's settings set.

A definition can only point at environment variables with the configured prefix and at
files in the configured secrets directory, so a definition cannot make the gateway send
its own credentials (or any file) to a broker of the definer's choosing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from events.errors import FlowbusError
from events.sources import SecretRef
from gateway.sources.settings import SourcesSettings

MAX_SECRET_BYTES = 64 * 1024


class SecretUnavailable(FlowbusError):
    """A secret reference cannot be resolved; the message says which and why."""


def resolve(ref: SecretRef | None, what: str, settings: SourcesSettings,
            environ: Mapping[str, str] | None = None) -> str | None:
    """The secret ``ref`` points at (None for no reference)."""
    if ref is None:
        return None
    env = os.environ if environ is None else environ
    if ref.env is not None:
        if not ref.env.startswith(settings.secret_env_prefix):
            raise SecretUnavailable(
                f"{what}: environment variable {ref.env!r} is not allowed; secret variables "
                f"must start with {settings.secret_env_prefix!r} (FLOWBUS_SOURCES_SECRET_ENV_PREFIX)"
            )
        value = env.get(ref.env)
        if value is None:
            raise SecretUnavailable(f"{what}: environment variable {ref.env!r} is not set "
                                    "on this gateway")
        return value
    assert ref.file is not None
    if not settings.secrets_dir:
        raise SecretUnavailable(f"{what}: file references need FLOWBUS_SOURCES_SECRETS_DIR "
                                "set on the gateway")
    base = Path(settings.secrets_dir).resolve()
    path = (base / ref.file).resolve()
    if path.parent != base:
        raise SecretUnavailable(f"{what}: file {ref.file!r} is not inside the secrets directory")
    try:
        with path.open("rb") as f:
            data = f.read(MAX_SECRET_BYTES + 1)
    except OSError as exc:
        raise SecretUnavailable(f"{what}: cannot read secret file {ref.file!r}: "
                                f"{exc.strerror or exc}") from None
    if len(data) > MAX_SECRET_BYTES:
        raise SecretUnavailable(f"{what}: secret file {ref.file!r} is over 64 KiB")
    try:
        return data.decode().strip("\r\n")
    except UnicodeDecodeError:
        raise SecretUnavailable(f"{what}: secret file {ref.file!r} is not UTF-8 text") from None
