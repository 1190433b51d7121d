"""Payloads a client sends (``prefect.client.schemas.actions``): `StateCreate`, the
state a run is asked to move to, as `flowbus.states.to_state_create` builds it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from events.states import StateType


class StateCreate(BaseModel):
    """A state to set on a run: its type, name, message, details, and as ``data`` only
    the metadata of a written result record (never the value itself)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    type: StateType
    name: str | None = None
    message: str | None = None
    data: Any = Field(default=None, description="a written result record's metadata, or None")
    state_details: Any = None


__all__ = ["StateCreate"]
