"""The records the client returns (Prefect's ``prefect.client.schemas.objects``):
flow runs and deployments as flowbus's API stores them, the state types, and
`FlowRunInput` (one run-input key of a flow run, as Prefect's client gives it)."""

import json
import re
from typing import Any

from pydantic import BaseModel, Field, field_validator

from events.records import Deployment, FlowRun
from flowbus.context import TaskRun
from flowbus.states import State, StateType


class FlowRunInput(BaseModel):
    """One input of a flow run: its key, its value as JSON text, and who sent it.

    ``RunInput.load_from_flow_run_input(flow_run_input)`` reads it as a typed input.
    """

    flow_run_id: str = Field(description="the flow run the input belongs to")
    key: str = Field(description="the input's key: lowercase letters, digits and dashes")
    value: str = Field(description="the input's value, as JSON text")
    sender: str | None = Field(default=None, description="who sent it, e.g. flowbus.flow-run.<id>")

    @field_validator("flow_run_id", mode="before")
    @classmethod
    def _run_id_text(cls, value: Any) -> Any:
        return str(value) if not isinstance(value, str) and value is not None else value

    @field_validator("key")
    @classmethod
    def _key_chars(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z0-9-]*", value):
            raise ValueError(f"key {value!r} must only contain lowercase letters, numbers, and dashes.")
        return value

    @property
    def decoded_value(self) -> Any:
        """The value, decoded from JSON."""
        return json.loads(self.value)


__all__ = ["Deployment", "FlowRun", "FlowRunInput", "State", "StateType", "TaskRun"]
