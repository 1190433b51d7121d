"""Which values of a stored definition are secrets, and sealing / opening them in place.

Webhook secrets, a call-webhook action's ``secret``, an email channel's ``password``,
a Slack or Teams channel's ``url`` (its path is the provider's token) and the values
of credential headers (``Authorization``, cookies, anything named
like a token, key, secret, signature or password) are stored sealed with
:class:`events.secretbox.SecretBox`; the part that uses one opens it just before use.
A value stored in plain text before sealing existed is still read as it is, and is
sealed the next time its record is written.

>>> box = SecretBox(SecretBox.generate_key())
>>> stored = seal_tree({"type": "call-webhook", "secret": "s" * 16}, box)
>>> is_sealed(stored["secret"]), open_tree(stored, box)["secret"] == "s" * 16
(True, True)
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from events.secretbox import ENV_KEY, SecretBox, SecretOpenError, SecretsKeyError, is_sealed

__all__ = [
    "CREDENTIAL_HEADER",
    "ENV_KEY",
    "MAX_SEALED",
    "SecretBox",
    "SecretOpenError",
    "SecretsKeyError",
    "box_or_none",
    "check_plain_length",
    "dev_box",
    "has_secrets",
    "is_sealed",
    "open_tree",
    "open_value",
    "refuse_start",
    "require_box",
    "seal_tree",
    "sealed_paths",
    "walk_secrets",
]

CREDENTIAL_HEADER = re.compile(r"authorization|cookie|token|secret|key|signature|password", re.I)
SECRET_KEYS = frozenset({"secret", "password"})
# Chat channels whose URL is itself the credential (a Slack or Teams webhook URL).
SECRET_URL_KINDS = frozenset({"slack", "teams"})
MAX_SEALED = 4096  # a sealed 1 KiB secret is about 1.4 KiB
KEY_FILE = "secrets.key"


def check_plain_length(value: str | None, low: int, high: int, what: str) -> str | None:
    """Length bounds for a secret given in plain text; a sealed one is checked when opened."""
    if value is None or is_sealed(value):
        return value
    if not low <= len(value) <= high:
        raise ValueError(f"{what} must be {low} to {high} characters, not {len(value)}")
    return value


def walk_secrets(value: Any, change: Callable[[str], str]) -> Any:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        secret_url = value.get("kind") in SECRET_URL_KINDS
        for key, item in value.items():
            if (key in SECRET_KEYS or (secret_url and key == "url")) and isinstance(item, str):
                out[key] = change(item)
            elif key == "headers" and isinstance(item, dict):
                out[key] = {name: change(v) if isinstance(v, str) and CREDENTIAL_HEADER.search(name)
                            else v for name, v in item.items()}
            else:
                out[key] = walk_secrets(item, change)
        return out
    if isinstance(value, list):
        return [walk_secrets(item, change) for item in value]
    return value


def _secrets(tree: Any) -> list[str]:
    found: list[str] = []

    def note(value: str) -> str:
        found.append(value)
        return value

    walk_secrets(tree, note)
    return found


def has_secrets(tree: Any) -> bool:
    """Whether a definition (as JSON) holds any secret value, sealed or plain."""
    return bool(_secrets(tree))


def seal_tree(tree: Any, box: SecretBox | None) -> Any:
    """``tree`` with every secret value sealed (sealed ones are left as they are).

    Without a box, a tree holding a plain secret is refused with :class:`SecretsKeyError`.
    """
    def seal(value: str) -> str:
        if is_sealed(value):
            return value
        return require_box(box, "storing a secret").seal(value)

    return walk_secrets(tree, seal)


def open_tree(tree: Any, box: SecretBox | None) -> Any:
    """``tree`` with every sealed secret opened; plain (legacy) values pass as they are."""
    return walk_secrets(tree, lambda v: open_value(v, box))


def open_value(value: str, box: SecretBox | None) -> str:
    """The plain secret: opened when sealed, as it is when stored before sealing existed."""
    if not is_sealed(value):
        return value
    return require_box(box, "using a stored secret").open(value)


def require_box(box: SecretBox | None, doing: str) -> SecretBox:
    if box is None:
        raise SecretsKeyError(
            f"{doing} needs {ENV_KEY}: set it to the same key in every part (gateway, "
            "orchestrator, and any CLI that writes definitions); make one with "
            "`flowbus block generate-key`")
    return box


def box_or_none() -> SecretBox | None:
    """The box for ``FLOWBUS_SECRETS_KEY`` (:class:`SecretsKeyError` when malformed), or None."""
    return SecretBox.from_environment()


def dev_box(home: Path) -> str:
    """The key ``flowbus dev`` uses when ``FLOWBUS_SECRETS_KEY`` is unset: a 0600 file in ``home``."""
    path = home / KEY_FILE
    try:
        key = path.read_text().strip()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        key = SecretBox.generate_key()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(key)
    SecretBox(key)  # a damaged file is an error naming the setting
    return key


def sealed_paths(tree: Any) -> list[str]:
    """Secret values given already sealed (input must give secrets in plain text)."""
    return [v[:12] + "..." for v in _secrets(tree) if is_sealed(v)]


def refuse_start(part: str, what: str) -> SecretsKeyError:
    return SecretsKeyError(
        f"the {part} cannot start: {what} hold secrets and {ENV_KEY} is not set; set it to the "
        "key they were sealed with (the same in every part)")
