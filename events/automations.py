"""Automations: a trigger plus actions. The one schema the gateway, orchestrator and SDK share.

An automation fires on the same triggers as deployments (:mod:`events.triggers`),
optionally shaped by flow control (``debounce``, ``throttle``, ``batch``), and runs
its ``actions`` (and ``actions_on_trigger``) when it fires, ``actions_on_resolve``
when a Proactive trigger's missing events arrive after all. Every action
(:mod:`events.automation_actions`) is checked when the automation is created: its
type, its parameters and its templates, and an automation that would trigger itself
is refused with the reason (:func:`check_loops`). Notification channels are in
:mod:`events.notification_channels`.

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

from events.automation_actions import (
    ACTION_NAMES,
    NAME,
    Action,
    EmitEvent,
    PauseDeployment,
    ResumeDeployment,
    RunDeployment,
)
from events.errors import FlowbusError
from events.messages import plain
from events.states import FLOW_RUN_STATES
from events.subjects import type_matches
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
FLOW_RUN_EVENT = "flowbus.flow-run.{state}"
DEPLOYMENT_LABELS = ("data.deployment_name", "data.deployment")
_EVENT_LABELS = frozenset({
    "id", "source", "type", "subject", "time", "specversion", "datacontenttype", "dataschema",
    "prefect.resource.id", "flowbus.resource.id",
})


class InvalidAutomation(FlowbusError, ValueError):
    """An automation or channel definition is malformed; the message names the field."""


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

    Refused: running a named deployment whose own flow-run events the trigger can
    match, pausing or resuming a deployment when the trigger expects the
    ``flowbus.deployment.paused``/``resumed`` event that publishes, and emitting an
    event the trigger expects. Loops through other automations or deployments are
    caught at run time (own events ignored, firing rate limit).
    """
    leaves = _leaves(spec.trigger)
    actions = [*spec.firing_actions(), *spec.actions_on_resolve]
    for index, action in enumerate(actions):
        if isinstance(action, PauseDeployment | ResumeDeployment):
            emitted = "flowbus.deployment." + ("paused" if isinstance(action, PauseDeployment) else "resumed")
            if any(type_matches(p, emitted) for leaf in leaves for p in (leaf.expect or {"*"}) | leaf.after):
                return (
                    f"action {index} ({action.type}) would trigger this automation again: it "
                    f"publishes {emitted}, which the trigger expects"
                )
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


def error_text(exc: ValidationError) -> str:
    first = exc.errors(include_url=False)[0]
    where = _where(tuple(first.get("loc", ())))
    message = plain(first)
    return f"{where or 'definition'}: {message}"


def check_size(value: Any, what: str) -> None:
    size = len(json.dumps(value, default=str))
    if size > MAX_DEFINITION_BYTES:
        raise InvalidAutomation(f"{what} is {size} bytes as JSON, over {MAX_DEFINITION_BYTES}")


def parse_automation(value: Any) -> AutomationSpec:
    """Validate an automation definition; :class:`InvalidAutomation` naming the field."""
    if not isinstance(value, dict | AutomationSpec):
        raise InvalidAutomation(f"an automation is an object, not {type(value).__name__}")
    if isinstance(value, dict):
        check_size(value, "automation")
    try:
        return AutomationSpec.model_validate(value if isinstance(value, dict) else value.model_dump())
    except ValidationError as exc:
        raise InvalidAutomation(f"automation {error_text(exc)}") from None


def parse_stored(raw: bytes | str) -> Automation:
    """A stored automation, validated (:class:`InvalidAutomation` if it is not one)."""
    try:
        return Automation.model_validate_json(raw)
    except ValidationError as exc:
        raise InvalidAutomation(f"stored automation {error_text(exc)}") from None


EVENT_TRIGGERED = "flowbus.automation.triggered"
EVENT_RESOLVED = "flowbus.automation.resolved"
EVENT_EXECUTED = "flowbus.automation.action.executed"
EVENT_FAILED = "flowbus.automation.action.failed"
SOURCE_PREFIX = "flowbus/automations"


def source_of(automation_id: str) -> str:
    """The ``source`` of every event an automation's actions publish (the runtime loop guard)."""
    return f"{SOURCE_PREFIX}/{automation_id}"


