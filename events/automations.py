"""Automations: a trigger plus actions. The one schema the gateway, orchestrator and SDK share.

An automation fires on the same triggers as deployments (:mod:`events.triggers`),
optionally shaped by flow control (``debounce``, ``throttle``, ``batch``), and runs
its ``actions`` (and ``actions_on_trigger``) when it fires, ``actions_on_resolve``
when a Proactive trigger's missing events arrive after all. Every action is checked
when the automation is created: its type, its parameters and its templates, and an
automation that would trigger itself is refused with the reason
(:func:`check_loops`). Notification channels are defined once (:class:`Channel`)
and named by ``send-notification`` actions.

>>> spec = parse_automation({
...     "name": "chain", "trigger": {"expect": ["flowbus.flow-run.Completed"],
...                                  "match": {"data.deployment_name": "extract"}},
...     "actions": [{"type": "run-deployment", "deployment": "load",
...                  "parameters": {"rows": "{{ result }}"}}]})
>>> spec.actions[0].type
'run-deployment'
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from events.errors import FlowbusError
from events.states import FLOW_RUN_STATES
from events.subjects import check_type, type_matches
from events.templates import TemplateError, check_value
from events.triggers import (
    MAX_WITHIN,
    CompoundTrigger,
    EventTrigger,
    Posture,
    SequenceTrigger,
)

MAX_DEFINITION_BYTES = 256 * 1024
MAX_ACTIONS = 50
MAX_BATCH = 1000
MAX_TEXT = 64 * 1024
NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
FLOW_RUN_EVENT = "flowbus.flow-run.{state}"
DEPLOYMENT_LABELS = ("data.deployment_name", "data.deployment")
_EVENT_LABELS = frozenset({
    "id", "source", "type", "subject", "time", "specversion", "datacontenttype", "dataschema",
    "prefect.resource.id", "flowbus.resource.id",
})
_URL = re.compile(r"^https?://[^\s/$.?#][^\s]*$", re.IGNORECASE)


class InvalidAutomation(FlowbusError, ValueError):
    """An automation or channel definition is malformed; the message names the field."""


def _templates(value: Any, what: str) -> Any:
    try:
        check_value(value)
    except TemplateError as exc:
        raise ValueError(f"{what}: {exc}") from None
    return value


def _url(value: str) -> str:
    if len(value) > 2048 or not _URL.match(value):
        raise ValueError(f"{value[:80]!r} is not an http(s) URL")
    return value


# --- flow control -----------------------------------------------------------------------


class Debounce(BaseModel):
    """Fire once, ``seconds`` after the last matching event of a ``for_each`` bucket."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seconds: float = Field(gt=0, le=MAX_WITHIN.total_seconds(), description="quiet period")


class Throttle(BaseModel):
    """At most ``limit`` firings per ``seconds``; the excess is dropped or delayed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    limit: int = Field(ge=1, le=10_000, description="firings allowed per period")
    seconds: float = Field(gt=0, le=MAX_WITHIN.total_seconds(), description="the period")
    excess: Literal["drop", "delay"] = Field(default="drop", description="what happens to the rest")
    max_delayed: int = Field(default=100, ge=1, le=MAX_BATCH, description="delayed firings kept")


class Batch(BaseModel):
    """Collect up to ``size`` events or ``seconds`` after the first, then fire once."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    size: int = Field(ge=1, le=MAX_BATCH, description="events per batch")
    seconds: float = Field(gt=0, le=MAX_WITHIN.total_seconds(), description="longest wait")


class _FlowControl(BaseModel):
    debounce: Debounce | None = Field(default=None, description="fire after events stop")
    throttle: Throttle | None = Field(default=None, description="cap the firing rate")
    batch: Batch | None = Field(default=None, description="fire once per group of events")

    @model_validator(mode="after")
    def _one_kind(self) -> _FlowControl:
        kinds = [k for k in ("debounce", "throttle", "batch") if getattr(self, k) is not None]
        if len(kinds) > 1:
            raise ValueError(f"use one of debounce, throttle and batch, not {' and '.join(kinds)}")
        posture = getattr(self, "posture", Posture.REACTIVE)
        if kinds and posture is Posture.PROACTIVE:
            raise ValueError(f"{kinds[0]} applies to Reactive triggers only")
        return self

    def flow_control(self) -> Debounce | Throttle | Batch | None:
        return self.debounce or self.throttle or self.batch


class AutomationEventTrigger(EventTrigger, _FlowControl):
    """An :class:`EventTrigger` with flow control."""


class AutomationCompoundTrigger(CompoundTrigger, _FlowControl):
    """A :class:`CompoundTrigger` with flow control."""


class AutomationSequenceTrigger(SequenceTrigger, _FlowControl):
    """A :class:`SequenceTrigger` with flow control."""


def _kind(value: Any) -> str | None:
    if isinstance(value, dict):
        return str(value.get("type", "event"))
    if isinstance(value, BaseModel):
        return str(getattr(value, "type", "event"))
    return None


AutomationTrigger = Annotated[
    Annotated[AutomationEventTrigger, Tag("event")]
    | Annotated[AutomationCompoundTrigger, Tag("compound")]
    | Annotated[AutomationSequenceTrigger, Tag("sequence")],
    Discriminator(_kind),
]
AnyAutomationTrigger = AutomationEventTrigger | AutomationCompoundTrigger | AutomationSequenceTrigger
FLOW_CONTROL_FIELDS = frozenset({"debounce", "throttle", "batch"})


def core_trigger(trigger: AnyAutomationTrigger) -> dict[str, Any]:
    """The trigger without flow control: what the shared trigger engine evaluates."""
    return trigger.model_dump(mode="json", exclude=set(FLOW_CONTROL_FIELDS))


# --- actions ------------------------------------------------------------------------------


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
        return dict(_templates(value, "parameters"))


class _FlowRunAction(_Action):
    flow_run_id: str | None = Field(
        default=None, max_length=4096,
        description="template for the run's id; none: the flow run the event is about",
    )

    @field_validator("flow_run_id")
    @classmethod
    def _id_template(cls, value: str | None) -> str | None:
        return _templates(value, "flow_run_id")  # type: ignore[no-any-return]


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

    @field_validator("state")
    @classmethod
    def _state(cls, value: str) -> str:
        if value not in FLOW_RUN_STATES:
            raise ValueError(f"{value!r} is not a flow-run state; use one of {', '.join(FLOW_RUN_STATES)}")
        return value

    @field_validator("message")
    @classmethod
    def _message(cls, value: str | None) -> str | None:
        return _templates(value, "message")  # type: ignore[no-any-return]


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
        return _templates(value, "notification")  # type: ignore[no-any-return]


class CallWebhook(_Action):
    """POST a templated body to ``url``, signed with HMAC-SHA256 when ``secret`` is set."""

    type: Literal["call-webhook"] = "call-webhook"
    url: str = Field(description="http(s) URL")
    method: Literal["POST", "PUT", "PATCH"] = Field(default="POST", description="HTTP method")
    headers: dict[str, str] = Field(default_factory=dict, max_length=32, description="extra headers")
    body: Any = Field(default=None, description="template (string) or JSON value with templates")
    secret: str | None = Field(default=None, min_length=16, max_length=512, description="HMAC key")
    timeout_seconds: float = Field(default=10, gt=0, le=60, description="per attempt")
    max_attempts: int = Field(default=5, ge=1, le=10, description="attempts before dead-lettering")

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        return _url(value)

    @field_validator("body")
    @classmethod
    def _body(cls, value: Any) -> Any:
        if len(json.dumps(value, default=str)) > MAX_TEXT * 4:
            raise ValueError("body is over 256 KiB")
        return _templates(value, "body")

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
        _templates(self.subject, "subject")
        _templates(self.data, "data")
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


# --- the automation -------------------------------------------------------------------------


class AutomationSpec(BaseModel):
    """What a user writes: when the trigger fires, run the actions."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=256, description="what the automation is called")
    description: str = Field(default="", max_length=4096, description="what it is for")
    enabled: bool = Field(default=True, description="a disabled automation never fires")
    tags: list[str] = Field(default_factory=list, max_length=64, description="labels for people")
    trigger: AutomationTrigger = Field(description="when it fires (events.triggers, + flow control)")
    actions: list[Action] = Field(
        min_length=1, max_length=MAX_ACTIONS, description="run, in order, when it fires"
    )
    actions_on_trigger: list[Action] = Field(
        default_factory=list, max_length=MAX_ACTIONS, description="run after `actions` when it fires"
    )
    actions_on_resolve: list[Action] = Field(
        default_factory=list, max_length=MAX_ACTIONS,
        description="run when a Proactive trigger's events arrive after it fired",
    )

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str]) -> list[str]:
        for tag in value:
            if not 1 <= len(tag) <= 128:
                raise ValueError(f"tag {tag[:40]!r} must be 1-128 characters")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> AutomationSpec:
        if self.actions_on_resolve and not _is_proactive(self.trigger):
            raise ValueError(
                "actions_on_resolve need a Proactive trigger: only a missing event can resolve"
            )
        problem = check_loops(self)
        if problem:
            raise ValueError(problem)
        return self

    def firing_actions(self) -> list[Any]:
        """``actions`` then ``actions_on_trigger``: what a firing runs, in order."""
        return [*self.actions, *self.actions_on_trigger]


class Automation(AutomationSpec):
    """A stored automation (key: ``id`` in ``flowbus-automations``)."""

    id: str = Field(pattern=NAME, description="the automation's id")
    created: datetime | None = Field(default=None, description="when it was created")
    updated: datetime | None = Field(default=None, description="when it last changed")


def _is_proactive(trigger: Any) -> bool:
    return isinstance(trigger, EventTrigger) and trigger.posture is Posture.PROACTIVE


def _leaves(trigger: Any) -> list[EventTrigger]:
    if isinstance(trigger, EventTrigger):
        return [trigger]
    return [leaf for child in trigger.triggers for leaf in _leaves(child)]


def _may_see_deployment(leaf: EventTrigger, deployment: str) -> bool:
    """Whether the leaf's labels let through flow-run events of ``deployment``."""
    for label, spec in leaf.match.items():
        values = [spec] if isinstance(spec, str) else spec
        if label not in _EVENT_LABELS and not label.startswith("data.") and any(
            not v.startswith("!") for v in values
        ):
            return False  # a label of data.resource, which flow-run events do not carry
    for label in DEPLOYMENT_LABELS:
        wanted = leaf.match.get(label)
        if wanted is None:
            continue
        values = [wanted] if isinstance(wanted, str) else wanted
        negative = [v[1:] for v in values if v.startswith("!")]
        positive = [v for v in values if not v.startswith("!")]
        if any(type_matches(v, deployment) for v in negative):
            return False
        if positive and not any(type_matches(v, deployment) for v in positive):
            return False
    return True


def _expects_flow_run_events(leaf: EventTrigger) -> bool:
    patterns = leaf.expect or {"*"}
    return any(
        type_matches(p, FLOW_RUN_EVENT.format(state=s)) for p in patterns for s in FLOW_RUN_STATES
    )


def check_loops(spec: AutomationSpec) -> str | None:
    """Why the automation would trigger itself, or None.

    Refused: running (or pausing/resuming, which emits deployment events) a named
    deployment whose own flow-run events the trigger can match, and emitting an event
    the trigger expects. Loops through other automations or deployments are caught
    at run time by the per-automation firing rate limit.
    """
    leaves = _leaves(spec.trigger)
    actions = [*spec.firing_actions(), *spec.actions_on_resolve]
    for index, action in enumerate(actions):
        if isinstance(action, RunDeployment) and action.deployment:
            for leaf in leaves:
                if _expects_flow_run_events(leaf) and _may_see_deployment(leaf, action.deployment):
                    return (
                        f"action {index} (run-deployment {action.deployment!r}) would trigger this "
                        f"automation again: the trigger matches flow-run events of "
                        f"{action.deployment!r}; narrow it with match: "
                        "{'data.deployment_name': '<another deployment>'}"
                    )
        if isinstance(action, EmitEvent):
            for leaf in leaves:
                if any(type_matches(p, action.event) for p in (leaf.expect or {"*"}) | leaf.after):
                    return (
                        f"action {index} (emit-event {action.event!r}) would trigger this "
                        "automation again: its trigger expects that event"
                    )
    return None


_SPEC: TypeAdapter[AutomationSpec] = TypeAdapter(AutomationSpec)


_TAGS = {"trigger": ("event", "compound", "sequence"), "config": ("webhook", "slack", "teams", "email")}


def _where(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    previous: Any = None
    for part in loc:
        tags = _TAGS["trigger"] if isinstance(previous, int) or previous == "triggers" else _TAGS.get(str(previous), ())
        if part in ACTION_NAMES or (isinstance(part, str) and part in tags):
            previous = part if part not in _TAGS["trigger"] else previous
            continue
        parts.append(str(part))
        previous = part
    return ".".join(parts)


def _error_text(exc: ValidationError) -> str:
    first = exc.errors(include_url=False)[0]
    where = _where(tuple(first.get("loc", ())))
    message = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    return f"{where or 'definition'}: {message}"


def _check_size(value: Any, what: str) -> None:
    size = len(json.dumps(value, default=str))
    if size > MAX_DEFINITION_BYTES:
        raise InvalidAutomation(f"{what} is {size} bytes as JSON, over {MAX_DEFINITION_BYTES}")


def parse_automation(value: Any) -> AutomationSpec:
    """Validate an automation definition; :class:`InvalidAutomation` naming the field."""
    if not isinstance(value, dict | AutomationSpec):
        raise InvalidAutomation(f"an automation is an object, not {type(value).__name__}")
    if isinstance(value, dict):
        _check_size(value, "automation")
    try:
        return AutomationSpec.model_validate(value if isinstance(value, dict) else value.model_dump())
    except ValidationError as exc:
        raise InvalidAutomation(f"automation {_error_text(exc)}") from None


def parse_stored(raw: bytes | str) -> Automation:
    """A stored automation, validated (:class:`InvalidAutomation` if it is not one)."""
    try:
        return Automation.model_validate_json(raw)
    except ValidationError as exc:
        raise InvalidAutomation(f"stored automation {_error_text(exc)}") from None


# --- notification channels ------------------------------------------------------------------


class WebhookChannel(BaseModel):
    """POST ``{"subject", "body", "event"}`` as JSON to ``url``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["webhook"] = "webhook"
    url: str = Field(description="http(s) URL")
    headers: dict[str, str] = Field(default_factory=dict, max_length=32, description="extra headers")

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        return _url(value)


class SlackChannel(BaseModel):
    """A Slack incoming webhook (``{"text": ..., "blocks": [...]}``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["slack"] = "slack"
    url: str = Field(description="the incoming-webhook URL")

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        return _url(value)


class TeamsChannel(BaseModel):
    """A Microsoft Teams webhook: a MessageCard or an Adaptive Card."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["teams"] = "teams"
    url: str = Field(description="the Teams (or Workflows) webhook URL")
    card: Literal["messagecard", "adaptive"] = Field(default="adaptive", description="card format")

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        return _url(value)


class EmailChannel(BaseModel):
    """Email over SMTP, with STARTTLS and login when configured."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["email"] = "email"
    host: str = Field(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9.:-]+$", description="SMTP host")
    port: int = Field(default=587, ge=1, le=65535, description="SMTP port")
    starttls: bool = Field(default=True, description="upgrade the connection with STARTTLS")
    tls_ca_file: str | None = Field(
        default=None, max_length=4096, description="CA bundle to verify the server (default: system CAs)"
    )
    username: str | None = Field(default=None, max_length=256, description="SMTP login")
    password: str | None = Field(default=None, max_length=1024, description="SMTP password")
    sender: str = Field(pattern=r"^[^@\s]+@[^@\s]+$", max_length=256, description="From address")
    to: list[str] = Field(min_length=1, max_length=100, description="recipient addresses")
    timeout_seconds: float = Field(default=15, gt=0, le=120, description="SMTP timeout")

    @field_validator("to")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        for address in value:
            if not re.fullmatch(r"[^@\s]+@[^@\s]+", address) or len(address) > 256:
                raise ValueError(f"{address[:80]!r} is not an email address")
        return value


ChannelConfig = Annotated[
    Annotated[WebhookChannel, Tag("webhook")]
    | Annotated[SlackChannel, Tag("slack")]
    | Annotated[TeamsChannel, Tag("teams")]
    | Annotated[EmailChannel, Tag("email")],
    Discriminator(lambda v: v.get("kind") if isinstance(v, dict) else getattr(v, "kind", None)),
]


class Channel(BaseModel):
    """A named notification channel (key ``channel.<name>`` in ``flowbus-automation-state``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME, description="what actions call it")
    config: ChannelConfig = Field(description="where and how to deliver")


def parse_channel(value: Any) -> Channel:
    """Validate a channel; :class:`InvalidAutomation` naming the field."""
    if not isinstance(value, dict):
        raise InvalidAutomation(f"a channel is an object, not {type(value).__name__}")
    _check_size(value, "channel")
    kind = value.get("config", {}).get("kind") if isinstance(value.get("config"), dict) else None
    if kind not in ("webhook", "slack", "teams", "email"):
        raise InvalidAutomation(
            f"channel config.kind {kind!r} is unknown; use webhook, slack, teams or email"
        )
    try:
        return Channel.model_validate(value)
    except ValidationError as exc:
        raise InvalidAutomation(f"channel {_error_text(exc)}") from None


EVENT_TRIGGERED = "flowbus.automation.triggered"
EVENT_RESOLVED = "flowbus.automation.resolved"
EVENT_EXECUTED = "flowbus.automation.action.executed"
EVENT_FAILED = "flowbus.automation.action.failed"
SOURCE_PREFIX = "flowbus/automations"


def source_of(automation_id: str) -> str:
    """The ``source`` of every event an automation's actions publish (the runtime loop guard)."""
    return f"{SOURCE_PREFIX}/{automation_id}"


def channel_key(name: str) -> str:
    return f"channel.{name}"

