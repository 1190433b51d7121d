"""Trigger definitions with Prefect 3's semantics, shared by gateway, orchestrator and SDK.

A deployment lists triggers; each says which events (or which missing events) start
a run. Three shapes, told apart by ``type`` (``event`` when absent):

- :class:`EventTrigger`: ``expect``/``after`` event names (``*`` wildcards), ``match``
  and ``match_related`` label filters, ``for_each``, ``posture`` Reactive or
  Proactive, ``threshold`` events ``within`` a window, and beyond Prefect an optional
  ``when`` CEL expression over the event.
- :class:`CompoundTrigger`: fires when ``require`` (``any``, ``all`` or N) of its
  triggers fired within ``within``.
- :class:`SequenceTrigger`: fires when its triggers fired in order within ``within``.

Deployment triggers add ``name``, ``enabled``, ``parameters`` (templates over the
event) and ``schedule_after``. Every validator states the invariant it enforces, so a
hostile or mistaken definition is refused with a message naming the offending value.

>>> t = parse_deployment_trigger({"expect": ["com.github.push"], "match": {"source": "gh/*"}})
>>> t.type, sorted(t.expect)
('event', ['com.github.push'])
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import timedelta
from enum import StrEnum
from functools import lru_cache
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
from events.messages import plain
from events.prefect_names import RESOURCE_ID_LABELS, from_prefect_name
from events.subjects import check_pattern
from events.templates import TemplateError, check_value

MAX_PATTERNS = 64
MAX_LABELS = 32
MAX_LABEL_VALUES = 64
MAX_VALUE_CHARS = 1024
MAX_CHILDREN = 16
MAX_DEPTH = 3
MAX_THRESHOLD = 1000
MAX_WITHIN = timedelta(days=30)
MAX_WHEN_CHARS = 4096
MAX_MACRO_ITEMS = 256  # longest list a `when` macro may go over (celpy: ~0.1 ms per item)
_CEL_MACRO = re.compile(r"\.\s*(?:all|exists_one|exists|map|filter)\s*\(")
_CEL_STRING = re.compile(r"\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'")
_LABEL = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}$")

LabelValue = str | list[str]


class InvalidTrigger(FlowbusError, ValueError):
    """A trigger definition is malformed; the message names the part at fault."""


class Posture(StrEnum):
    REACTIVE = "Reactive"
    PROACTIVE = "Proactive"
    # Prefect's member names (aliases of the same values).
    Reactive = "Reactive"
    Proactive = "Proactive"


def _check_labels(spec: dict[str, LabelValue], what: str) -> dict[str, LabelValue]:
    if len(spec) > MAX_LABELS:
        raise ValueError(f"{what} has {len(spec)} labels, over {MAX_LABELS}")
    for label, value in spec.items():
        if not _LABEL.match(label):
            raise ValueError(
                f"{what} label {label!r} must be 1-128 letters, digits, '_', '.', ':' or '-'"
            )
        values = [value] if isinstance(value, str) else value
        if not values:
            raise ValueError(f"{what} label {label!r} has an empty list of values")
        if len(values) > MAX_LABEL_VALUES:
            raise ValueError(f"{what} label {label!r} has {len(values)} values, over {MAX_LABEL_VALUES}")
        for item in values:
            if len(item) > MAX_VALUE_CHARS:
                raise ValueError(f"{what} label {label!r} has a value over {MAX_VALUE_CHARS} characters")
    return spec


def _flowbus_resource_ids(spec: dict[str, LabelValue]) -> dict[str, LabelValue]:
    """``spec`` with Prefect resource ids (``prefect.flow-run.*``) as flowbus's."""
    out: dict[str, LabelValue] = {}
    for label, value in spec.items():
        if label in RESOURCE_ID_LABELS:
            value = from_prefect_name(value) if isinstance(value, str) else [from_prefect_name(v) for v in value]
        out[label] = value
    return out


def _check_patterns(patterns: set[str], what: str) -> set[str]:
    if len(patterns) > MAX_PATTERNS:
        raise ValueError(f"{what} has {len(patterns)} patterns, over {MAX_PATTERNS}")
    for pattern in patterns:
        try:
            check_pattern(pattern)
        except ValueError as exc:
            raise ValueError(f"{what} pattern {pattern!r} is not an event name pattern: {exc}") from None
    return patterns


class WhenBudgetExceeded(FlowbusError):
    """A ``when`` expression's macros would run over a list longer than the budget."""


class WhenProgram:
    """A compiled ``when`` expression with its budget: comprehension macros (``all``,
    ``exists``, ``exists_one``, ``map``, ``filter``) may not nest, and run only over
    lists of at most :data:`MAX_MACRO_ITEMS` items, so one evaluation costs at most
    that many steps of a macro-free body."""

    __slots__ = ("macros", "program")

    def __init__(self, program: Any, macros: int) -> None:
        self.program = program
        self.macros = macros

    def check_budget(self, data: Any) -> None:
        """:class:`WhenBudgetExceeded` when a macro would go over too long a list in
        ``data`` (the event as JSON; checked before it is converted for CEL)."""
        if self.macros and _has_list_over(data, MAX_MACRO_ITEMS):
            raise WhenBudgetExceeded(
                f"a list in the event is over {MAX_MACRO_ITEMS} items, the most a 'when' "
                "macro may go over")

    def evaluate(self, activation: Any) -> Any:
        return self.program.evaluate(activation)


def _has_list_over(value: Any, limit: int) -> bool:
    stack = [value] if isinstance(value, dict | list | tuple) else []
    while stack:
        item = stack.pop()
        if isinstance(item, list | tuple) and len(item) > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend(c for c in children if isinstance(c, dict | list | tuple))
    return False


def _macro_spans(expression: str) -> list[tuple[int, int]]:
    """(start, end) of each macro call's parentheses, string literals skipped."""
    code = _CEL_STRING.sub(lambda m: "_" * len(m.group()), expression)
    spans = []
    for found in _CEL_MACRO.finditer(code):
        depth, end = 0, len(code)
        for index in range(found.end() - 1, len(code)):
            depth += {"(": 1, ")": -1}.get(code[index], 0)
            if depth == 0:
                end = index
                break
        spans.append((found.start(), end))
    return spans


@lru_cache(maxsize=1024)
def compile_when(expression: str) -> WhenProgram:
    """Compile a CEL ``when`` expression; :class:`InvalidTrigger` saying why it is wrong."""
    if len(expression) > MAX_WHEN_CHARS:
        raise InvalidTrigger(f"when expression is {len(expression)} characters, over {MAX_WHEN_CHARS}")
    import celpy

    spans = _macro_spans(expression)
    if any(a < b[0] < a_end for a, a_end in spans for b in spans if b[0] != a):
        raise InvalidTrigger(
            f"when expression {expression[:80]!r} nests a macro (all, exists, exists_one, map, "
            "filter) inside another; its cost would grow with the square of a list's size")
    env = celpy.Environment()
    try:
        ast = env.compile(expression)
        return WhenProgram(env.program(ast), len(spans))
    except Exception as exc:  # celpy raises its own parse errors of several kinds
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InvalidTrigger(f"when expression {expression[:80]!r} does not compile: {first_line}") from None


class EventTrigger(BaseModel):
    """Fires on (Reactive) or in the absence of (Proactive) events matching it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["event"] = Field(default="event", description="trigger kind")
    expect: set[str] = Field(default_factory=set, description="event names counted (* wildcards)")
    after: set[str] = Field(
        default_factory=set, description="event names that must be seen first (* wildcards)"
    )
    match: dict[str, LabelValue] = Field(
        default_factory=dict, description="labels of the event's resource: value, list, *, !negation"
    )
    match_related: dict[str, LabelValue] | list[dict[str, LabelValue]] = Field(
        default_factory=dict, description="labels one related resource must carry (each, for a list)"
    )
    for_each: set[str] = Field(
        default_factory=set, description="labels whose values keep a separate count each"
    )
    posture: Posture = Field(default=Posture.REACTIVE, description="Reactive or Proactive")
    threshold: int = Field(default=1, ge=1, le=MAX_THRESHOLD, description="events needed")
    within: timedelta = Field(
        default=timedelta(0), ge=timedelta(0), le=MAX_WITHIN,
        description="window for threshold (Reactive: 0 = unbounded; Proactive: the deadline)",
    )
    when: str | None = Field(default=None, description="CEL expression over `event`; must be true")

    @field_validator("expect", "after")
    @classmethod
    def _patterns(cls, value: set[str]) -> set[str]:
        # Prefect's prefect.flow-run.*, prefect.asset.* ... names are flowbus's events here.
        return _check_patterns({from_prefect_name(p) for p in value}, "expect/after")

    @field_validator("match")
    @classmethod
    def _match(cls, value: dict[str, LabelValue]) -> dict[str, LabelValue]:
        return _check_labels(_flowbus_resource_ids(value), "match")

    @field_validator("match_related")
    @classmethod
    def _match_related(
        cls, value: dict[str, LabelValue] | list[dict[str, LabelValue]]
    ) -> dict[str, LabelValue] | list[dict[str, LabelValue]]:
        specs = [value] if isinstance(value, dict) else value
        if len(specs) > MAX_LABELS:
            raise ValueError(f"match_related has {len(specs)} specifications, over {MAX_LABELS}")
        for spec in specs:
            _check_labels(spec, "match_related")
        return value

    @field_validator("for_each")
    @classmethod
    def _for_each(cls, value: set[str]) -> set[str]:
        if len(value) > MAX_LABELS:
            raise ValueError(f"for_each has {len(value)} labels, over {MAX_LABELS}")
        for label in value:
            if not _LABEL.match(label):
                raise ValueError(f"for_each label {label!r} is not a valid label name")
        return value

    @field_validator("when")
    @classmethod
    def _when(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                compile_when(value)
            except InvalidTrigger as exc:
                raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _posture_rules(self) -> EventTrigger:
        if self.posture is Posture.PROACTIVE and self.within < timedelta(seconds=1):
            raise ValueError("a Proactive trigger needs within >= 1 second: the time the events may take")
        if not self.expect and not self.after and self.posture is Posture.PROACTIVE:
            raise ValueError("a Proactive trigger needs expect: the events whose absence it detects")
        return self

    def is_stateless(self) -> bool:
        """True when every matching event fires at once, so no state needs keeping."""
        return (
            self.posture is Posture.REACTIVE and self.threshold == 1 and not self.after
        )


class CompoundTrigger(BaseModel):
    """Fires when ``require`` of its triggers fired within ``within``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["compound"] = "compound"
    triggers: list[Trigger] = Field(min_length=1, max_length=MAX_CHILDREN)
    require: int | Literal["any", "all"] = Field(default="all", description="any, all or a number")
    within: timedelta = Field(default=timedelta(0), ge=timedelta(0), le=MAX_WITHIN)

    @model_validator(mode="after")
    def _require_fits(self) -> CompoundTrigger:
        if isinstance(self.require, int) and not 1 <= self.require <= len(self.triggers):
            raise ValueError(f"require={self.require} must be between 1 and {len(self.triggers)} (the triggers)")
        _check_children(self.triggers)
        return self

    def required(self) -> int:
        if self.require == "any":
            return 1
        if self.require == "all":
            return len(self.triggers)
        return self.require


class SequenceTrigger(BaseModel):
    """Fires when its triggers fired one after the other within ``within``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["sequence"] = "sequence"
    triggers: list[Trigger] = Field(min_length=1, max_length=MAX_CHILDREN)
    within: timedelta = Field(default=timedelta(0), ge=timedelta(0), le=MAX_WITHIN)

    @model_validator(mode="after")
    def _children(self) -> SequenceTrigger:
        _check_children(self.triggers)
        return self


def _check_children(children: list[Trigger]) -> None:
    for child in children:
        if isinstance(child, EventTrigger) and child.posture is Posture.PROACTIVE:
            raise ValueError(
                "a Proactive trigger inside a compound or sequence trigger is not supported; "
                "make it a trigger of its own"
            )
    if depth(children[0]) >= MAX_DEPTH or any(depth(c) >= MAX_DEPTH for c in children):
        raise ValueError(f"triggers nest deeper than {MAX_DEPTH} levels")


def depth(trigger: Trigger) -> int:
    if isinstance(trigger, EventTrigger):
        return 1
    return 1 + max(depth(c) for c in trigger.triggers)


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("type", "event"))
    return str(getattr(value, "type", "event"))


Trigger = Annotated[
    Annotated[EventTrigger, Tag("event")]
    | Annotated[CompoundTrigger, Tag("compound")]
    | Annotated[SequenceTrigger, Tag("sequence")],
    Discriminator(_kind),
]
CompoundTrigger.model_rebuild()
SequenceTrigger.model_rebuild()


class _DeploymentFields(BaseModel):
    name: str | None = Field(default=None, max_length=256, description="shown in the UI and logs")
    enabled: bool = Field(default=True, description="a disabled trigger starts nothing")
    parameters: dict[str, Any] = Field(
        default_factory=dict, description="run parameters; strings are templates over `event`"
    )
    schedule_after: timedelta = Field(
        default=timedelta(0), ge=timedelta(0), le=MAX_WITHIN,
        description="delay between the trigger firing and the run's start",
    )

    @field_validator("parameters")
    @classmethod
    def _templates_compile(cls, value: dict[str, Any]) -> dict[str, Any]:
        if len(json.dumps(value, default=str)) > 256 * 1024:
            raise ValueError("parameters are over 256 KiB as JSON")
        try:
            check_value(value)
        except TemplateError as exc:
            raise ValueError(f"parameters: {exc}") from None
        return value


class DeploymentEventTrigger(EventTrigger, _DeploymentFields):
    """An :class:`EventTrigger` that starts a run of its deployment."""


class DeploymentCompoundTrigger(CompoundTrigger, _DeploymentFields):
    """A :class:`CompoundTrigger` that starts a run of its deployment."""


class DeploymentSequenceTrigger(SequenceTrigger, _DeploymentFields):
    """A :class:`SequenceTrigger` that starts a run of its deployment."""


DeploymentTrigger = Annotated[
    Annotated[DeploymentEventTrigger, Tag("event")]
    | Annotated[DeploymentCompoundTrigger, Tag("compound")]
    | Annotated[DeploymentSequenceTrigger, Tag("sequence")],
    Discriminator(_kind),
]
_DEPLOYMENT_TRIGGER: TypeAdapter[Any] = TypeAdapter(DeploymentTrigger)


def parse_deployment_trigger(value: Any) -> DeploymentEventTrigger | DeploymentCompoundTrigger | DeploymentSequenceTrigger:
    """Validate one deployment trigger (a dict or model); :class:`InvalidTrigger` if wrong."""
    if isinstance(value, dict) and _kind(value) not in ("event", "compound", "sequence"):
        raise InvalidTrigger(
            f"trigger type {value.get('type')!r} is unknown; use 'event', 'compound' or 'sequence'"
        )
    try:
        result: DeploymentEventTrigger | DeploymentCompoundTrigger | DeploymentSequenceTrigger
        result = _DEPLOYMENT_TRIGGER.validate_python(value)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first.get("loc", ()) if str(p) not in ("event", "compound", "sequence"))
        message = plain(first)
        raise InvalidTrigger(f"trigger {where or 'definition'}: {message}") from None
    return result


def trigger_id(deployment_id: str, definition: Any) -> str:
    """A trigger's stable id: its deployment and its definition.

    Updating a deployment keeps the id, and so the state, of every trigger whose
    definition did not change (Prefect loses it).
    """
    if not isinstance(definition, BaseModel):
        definition = parse_deployment_trigger(definition)
    canonical = json.dumps(_normalized(definition.model_dump(mode="json")), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.blake2b(f"{deployment_id}\x1f{canonical}".encode(), digest_size=12).hexdigest()


_SET_FIELDS = frozenset({"expect", "after", "for_each"})
_COSMETIC = frozenset({"name", "enabled"})


def _normalized(value: Any, top: bool = True) -> Any:
    """Sets in a stable order; name and enabled left out (they do not change what fires)."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if top and key in _COSMETIC:
                continue
            if key in _SET_FIELDS and isinstance(item, list | set | tuple):
                out[key] = sorted(str(i) for i in item)
            else:
                out[key] = _normalized(item, False)
        return out
    if isinstance(value, list):
        return [_normalized(v, False) for v in value]
    return value
