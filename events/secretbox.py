"""Encryption at rest for secret values (block secret fields, and any other secret
a part must store in NATS).

A :class:`SecretBox` seals a text with authenticated encryption (Fernet: AES-128-CBC
with an HMAC-SHA256 tag) under a key taken from the environment, so whoever can read
the bucket cannot read the secret, and a tampered value is refused rather than used.
``FLOWBUS_SECRETS_KEY`` holds one key, or several separated by commas to rotate:
the first seals, every one opens.

>>> box = SecretBox(SecretBox.generate_key())
>>> box.open(box.seal("hunter2"))
'hunter2'
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from events.errors import FlowbusError

ENV_KEY = "FLOWBUS_SECRETS_KEY"
PREFIX = "fbx1:"  # marks a sealed value, and the format version


class SecretsKeyError(FlowbusError):
    """The encryption key is missing or malformed."""


class SecretOpenError(FlowbusError):
    """A sealed value cannot be opened: another key sealed it, or it was altered."""


class SecretBox:
    """Seal and open texts with the configured key(s)."""

    def __init__(self, keys: str | list[str]) -> None:
        names = [k.strip() for k in (keys.split(",") if isinstance(keys, str) else keys) if k.strip()]
        if not names:
            raise SecretsKeyError(f"no encryption key given; set {ENV_KEY} (make one with "
                                  "`flowbus block generate-key`)")
        try:
            self._fernet = MultiFernet([Fernet(k.encode()) for k in names])
        except ValueError:
            raise SecretsKeyError(
                f"{ENV_KEY} is not a valid key: each key must be 32 url-safe base64-encoded "
                "bytes (make one with `flowbus block generate-key`)"
            ) from None

    @staticmethod
    def generate_key() -> str:
        """A new random key, as ``FLOWBUS_SECRETS_KEY`` expects it."""
        return Fernet.generate_key().decode()

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> SecretBox | None:
        """The box for ``FLOWBUS_SECRETS_KEY``, or None when it is unset."""
        value = (os.environ if environ is None else environ).get(ENV_KEY)
        return cls(value) if value else None

    def seal(self, plaintext: str) -> str:
        return PREFIX + self._fernet.encrypt(plaintext.encode()).decode()

    def open(self, sealed: str) -> str:
        if not is_sealed(sealed):
            raise SecretOpenError("the value is not a sealed secret")
        try:
            return self._fernet.decrypt(sealed.removeprefix(PREFIX).encode()).decode()
        except InvalidToken:
            raise SecretOpenError(
                f"a secret cannot be opened with the key(s) in {ENV_KEY}: it was sealed with "
                "another key, or altered"
            ) from None


def is_sealed(value: object) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)
