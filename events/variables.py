"""The variable record in ``flowbus-variables``: what the API and the SDK both read and write.

Key = the variable's name; value = :class:`VariableRecord` as JSON.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

NAME_PATTERN = r"^[a-z0-9_-]{1,255}$"
MAX_VALUE_BYTES = 64 * 1024


class VariableRecord(BaseModel):
    """A stored variable."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN, description="lowercase letters, digits, '_' or '-'")
    value: Any = Field(description="any JSON value, at most 64 KiB encoded")
    tags: list[str] = Field(default_factory=list, max_length=100, description="labels")
    created: datetime = Field(description="when it was created")
    updated: datetime = Field(description="when it last changed")
