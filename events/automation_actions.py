"""The actions an automation runs, each validated with its parameters at creation.

Templates inside parameters are compiled here (:mod:`events.templates`), so a
definition with a broken template is refused before it is stored.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from events.sealed import MAX_SEALED, check_plain_length
from events.states import FLOW_RUN_STATES
from events.subjects import check_type
from events.templates import TemplateError, check_value

MAX_TEXT = 64 * 1024
NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
_URL = re.compile(r"^https?://[^\s/$.?#][^\s]*$", re.IGNORECASE)


def check_templates(value: Any, what: str) -> Any:
    """``value`` if every template in it compiles; ValueError naming ``what`` otherwise."""
    try:
        check_value(value)
    except TemplateError as exc:
        raise ValueError(f"{what}: {exc}") from None
    return value


def check_url(value: str) -> str:
    """``value`` if it is an http(s) URL of at most 2,048 characters."""
    if len(value) > 2048 or not _URL.match(value):
        raise ValueError(f"{value[:80]!r} is not an http(s) URL")
    return value





class _Action(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RunDeployment(_Action):
    """Ask for a run of ``deployment`` (or of the deployment the event is about)."""

    type: Literal["run-deployment"] = "run-deployment"
    deployment: str | None = Field(
        default=None, pattern=NAME, description="deployment name; none: inferred from the event"
    )
    parameters: dict[str, Any] = Field(
        default_factory=dict,
        description="run parameters; strings are templates over event, flow_run, result, events",
    )
    tags: list[str] = Field(default_factory=list, max_length=64, description="extra run tags")

    @field_validator("parameters")
    @classmethod
    def _params(cls, value: dict[str, Any]) -> dict[str, Any]:
        return dict(check_templates(value, "parameters"))


class _FlowRunAction(_Action):
    flow_run_id: str | None = Field(
        default=None, max_length=4096,
        description="template for the run's id; none: the flow run the event is about",
    )

    @field_validator("flow_run_id")
    @classmethod
    def _id_template(cls, value: str | None) -> str | None:
        return check_templates(value, "flow_run_id")  # type: ignore[no-any-return]


class RetryFlowRun(_FlowRunAction):
    """Start a new attempt of a Failed or Crashed run (at most ``max_attempts`` in all)."""

    type: Literal["retry-flow-run"] = "retry-flow-run"
    max_attempts: int = Field(default=3, ge=1, le=100, description="attempts a run may have in all")
    delay_seconds: float = Field(default=0, ge=0, le=86_400, description="wait before the attempt")


class CancelFlowRun(_FlowRunAction):
    """Cancel a run."""

    type: Literal["cancel-flow-run"] = "cancel-flow-run"


class ChangeFlowRunState(_FlowRunAction):
    """Move a run to ``state`` (the transition rules of events/states.py apply)."""

    type: Literal["change-flow-run-state"] = "change-flow-run-state"
    state: str = Field(description="a flow-run state name, e.g. Cancelled or Failed")
    message: str | None = Field(default=None, max_length=MAX_TEXT, description="template")

    @field_validator("state", mode="before")
    @classmethod
    def _state(cls, value: Any) -> Any:
        # Prefect gives a state type (StateType.CRASHED): its state of that name.
        value = getattr(value, "value", value)
        if isinstance(value, str) and value.isupper() and value.title() in FLOW_RUN_STATES:
            value = value.title()
        if value not in FLOW_RUN_STATES:
            raise ValueError(f"{value!r} is not a flow-run state; use one of {', '.join(FLOW_RUN_STATES)}")
        return value

    @field_validator("message")
    @classmethod
    def _message(cls, value: str | None) -> str | None:
        return check_templates(value, "message")  # type: ignore[no-any-return]


class PauseDeployment(_Action):
    """Pause a deployment (named, or the one the event is about)."""

    type: Literal["pause-deployment"] = "pause-deployment"
    deployment: str | None = Field(default=None, pattern=NAME, description="none: inferred")


class ResumeDeployment(_Action):
    """Resume a deployment (named, or the one the event is about)."""

    type: Literal["resume-deployment"] = "resume-deployment"
    deployment: str | None = Field(default=None, pattern=NAME, description="none: inferred")


class PauseAutomation(_Action):
    """Disable an automation (this one when none is named)."""

    type: Literal["pause-automation"] = "pause-automation"
    automation_id: str | None = Field(default=None, pattern=NAME, description="none: this one")


class ResumeAutomation(_Action):
    """Enable an automation (this one when none is named)."""

    type: Literal["resume-automation"] = "resume-automation"
    automation_id: str | None = Field(default=None, pattern=NAME, description="none: this one")


class SendNotification(_Action):
    """Send ``subject`` and ``body`` (Jinja templates) through a named channel."""

    type: Literal["send-notification"] = "send-notification"
    channel: str = Field(pattern=NAME, description="name of a defined channel")
    subject: str = Field(default="flowbus: {{ event.type }}", max_length=4096, description="template")
    body: str = Field(max_length=MAX_TEXT, description="template over event, flow_run, deployment")

    @field_validator("subject", "body")
    @classmethod
    def _text(cls, value: str) -> str:
        return check_templates(value, "notification")  # type: ignore[no-any-return]


class CallWebhook(_Action):
    """POST a templated body to ``url``, signed with HMAC-SHA256 when ``secret`` is set."""

    type: Literal["call-webhook"] = "call-webhook"
    url: str = Field(description="http(s) URL")
    method: Literal["POST", "PUT", "PATCH"] = Field(default="POST", description="HTTP method")
    headers: dict[str, str] = Field(default_factory=dict, max_length=32, description="extra headers")
    body: Any = Field(default=None, description="template (string) or JSON value with templates")
    secret: str | None = Field(
        default=None, max_length=MAX_SEALED,
        description="HMAC key, 16 to 512 characters (stored sealed, events.sealed)")
    timeout_seconds: float = Field(default=10, gt=0, le=60, description="per attempt")
    max_attempts: int = Field(default=5, ge=1, le=10, description="attempts before dead-lettering")

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        return check_url(value)

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: str | None) -> str | None:
        return check_plain_length(value, 16, 512, "secret")

    @field_validator("body")
    @classmethod
    def _body(cls, value: Any) -> Any:
        if len(json.dumps(value, default=str)) > MAX_TEXT * 4:
            raise ValueError("body is over 256 KiB")
        return check_templates(value, "body")

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name, item in value.items():
            if not re.fullmatch(r"[A-Za-z0-9-]{1,64}", name) or "\n" in item or "\r" in item:
                raise ValueError(f"header {name[:64]!r} is not a valid header name or value")
        return value


class EmitEvent(_Action):
    """Publish an event; ``subject`` and ``data`` are templates."""

    type: Literal["emit-event"] = "emit-event"
    event: str = Field(description="the event type (no template)")
    subject: str | None = Field(default=None, max_length=4096, description="template")
    data: Any = Field(default=None, description="JSON value with templates")

    @field_validator("event")
    @classmethod
    def _event_type(cls, value: str) -> str:
        try:
            return check_type(value)
        except ValueError as exc:
            raise ValueError(str(exc)) from None

    @model_validator(mode="after")
    def _templates_ok(self) -> EmitEvent:
        check_templates(self.subject, "subject")
        check_templates(self.data, "data")
        return self


class DoNothing(_Action):
    """Nothing (the firing is still recorded as triggered)."""

    type: Literal["do-nothing"] = "do-nothing"


ACTION_TYPES = (
    RunDeployment, RetryFlowRun, CancelFlowRun, ChangeFlowRunState, PauseDeployment,
    ResumeDeployment, PauseAutomation, ResumeAutomation, SendNotification, CallWebhook,
    EmitEvent, DoNothing,
)
ACTION_NAMES = tuple(t.model_fields["type"].default for t in ACTION_TYPES)
Action = Annotated[
    Annotated[RunDeployment, Tag("run-deployment")]
    | Annotated[RetryFlowRun, Tag("retry-flow-run")]
    | Annotated[CancelFlowRun, Tag("cancel-flow-run")]
    | Annotated[ChangeFlowRunState, Tag("change-flow-run-state")]
    | Annotated[PauseDeployment, Tag("pause-deployment")]
    | Annotated[ResumeDeployment, Tag("resume-deployment")]
    | Annotated[PauseAutomation, Tag("pause-automation")]
    | Annotated[ResumeAutomation, Tag("resume-automation")]
    | Annotated[SendNotification, Tag("send-notification")]
    | Annotated[CallWebhook, Tag("call-webhook")]
    | Annotated[EmitEvent, Tag("emit-event")]
    | Annotated[DoNothing, Tag("do-nothing")],
    Discriminator(lambda v: v.get("type") if isinstance(v, dict) else getattr(v, "type", None)),
]
