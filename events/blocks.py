"""Blocks in ``flowbus-blocks``: stored configuration and credentials.

Key = ``<block type slug>.<block name>``; value = :class:`BlockDocument` as JSON.
The values of the fields named in ``secret_fields`` are sealed with
:class:`events.secretbox.SecretBox` before they are stored, so the bucket never
holds a secret in clear; :func:`public_view` is what an API or CLI reader gets.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

SLUG_PATTERN = r"^[a-z0-9-]{1,100}$"
NAME_PATTERN = r"^[a-z0-9-]{1,100}$"
_SLUG = re.compile(SLUG_PATTERN)
MASK = "********"
MAX_BLOCK_BYTES = 256 * 1024


class BlockDocument(BaseModel):
    """One saved block."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="block document id (a UUID)")
    block_type: str = Field(pattern=SLUG_PATTERN, description="the block class's slug, e.g. 'secret'")
    name: str = Field(pattern=NAME_PATTERN, description="lowercase letters, digits and dashes")
    data: dict[str, Any] = Field(description="field values; secret ones sealed")
    secret_fields: list[str] = Field(default_factory=list, description="fields whose values are sealed")
    created: datetime = Field(description="when it was first saved")
    updated: datetime = Field(description="when it was last saved")


def block_key(block_type: str, name: str) -> str:
    return f"{block_type}.{name}"


def valid_slug(value: str) -> bool:
    return _SLUG.fullmatch(value) is not None


def public_view(document: BlockDocument) -> dict[str, Any]:
    """The document as a reader may see it: every secret field masked."""
    data = {k: (MASK if k in document.secret_fields else v) for k, v in document.data.items()}
    return {**document.model_dump(mode="json"), "data": data}
