"""Run parameters checked at the door, against the deployment's parameter schema.

``flowbus deploy`` stores with each deployment the JSON schema of its flow's
parameters (from the type hints; :func:`flowbus.entrypoints.parameter_schema`). Every
way of asking for a run checks the parameters against it *before* anything is
created: the REST API answers 422 naming each bad parameter, ``flowbus deployment
run -p`` exits with the same text, static trigger and automation parameters are
checked when they are stored, and the orchestrator checks what templates rendered
(a run refused there is stored Failed with the reason, never run).

Types are checked the way the flow itself will coerce them (pydantic's lax mode):
``"3"`` is a fine ``int``, ``"yes"`` a fine ``bool``; ``"three"`` is not. A
deployment stored without a schema (made through the API by hand) accepts anything.

>>> schema = {"type": "object", "properties": {"name": {"type": "string"}},
...           "additionalProperties": False, "required": ["name"]}
>>> [str(p) for p in check_parameters(schema, {"nam": "x"})]
["'nam' is not a parameter (did you mean 'name'?)", "'name' is required and has no default"]
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from events.errors import FlowbusError

_INT = re.compile(r"^\s*[-+]?\d+(\.0*)?\s*$")
_NUMBER = re.compile(r"^\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*$")
_BOOL_WORDS = frozenset({"true", "false", "yes", "no", "on", "off", "1", "0", "t", "f", "y", "n"})
_TEMPLATE = re.compile(r"\{\{|\{%")


@dataclass(frozen=True)
class ParameterProblem:
    """One bad parameter: its name and what is wrong, in the user's words."""

    name: str
    reason: str

    def __str__(self) -> str:
        return f"{self.name!r} {self.reason}"


class InvalidParameters(FlowbusError, ValueError):
    """Run parameters that do not fit the deployment; ``problems`` names each one."""

    def __init__(self, deployment: str, problems: list[ParameterProblem]) -> None:
        self.deployment = deployment
        self.problems = problems
        super().__init__(describe(deployment, problems))


def describe(deployment: str, problems: list[ParameterProblem]) -> str:
    """One line: ``parameters of deployment 'x': 'a' ...; 'b' ...``."""
    return f"parameters of deployment {deployment!r}: " + "; ".join(str(p) for p in problems)


def is_template(value: Any) -> bool:
    """Whether a value holds a Jinja template (rendered from the event at firing time)."""
    if isinstance(value, str):
        return _TEMPLATE.search(value) is not None
    if isinstance(value, Mapping):
        return any(is_template(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(is_template(v) for v in value)
    return False


def _lax_type_checker() -> Any:
    from jsonschema import Draft202012Validator

    base = Draft202012Validator.TYPE_CHECKER

    def integer(checker: Any, value: Any) -> bool:
        if isinstance(value, str):
            return _INT.match(value) is not None
        if isinstance(value, float):
            return value.is_integer()
        return bool(base.is_type(value, "integer"))

    def number(checker: Any, value: Any) -> bool:
        if isinstance(value, str):
            return _NUMBER.match(value) is not None
        return bool(base.is_type(value, "number"))

    def boolean(checker: Any, value: Any) -> bool:
        if isinstance(value, str):
            return value.strip().lower() in _BOOL_WORDS
        if isinstance(value, int) and not isinstance(value, bool):
            return value in (0, 1)
        return isinstance(value, bool)

    def array(checker: Any, value: Any) -> bool:  # a set or tuple arrives as a list in JSON
        return isinstance(value, list | tuple)

    return base.redefine_many({"integer": integer, "number": number, "boolean": boolean,
                               "array": array})


_VALIDATOR: Any = None


def _validator_class() -> Any:
    global _VALIDATOR
    if _VALIDATOR is None:
        from jsonschema import Draft202012Validator, validators

        _VALIDATOR = validators.extend(Draft202012Validator, type_checker=_lax_type_checker())
    return _VALIDATOR


_TYPE_WORDS = {
    "integer": "a whole number", "number": "a number", "string": "a string",
    "boolean": "true or false", "array": "a list", "object": "an object (a JSON mapping)",
    "null": "null",
}


def _expected(schema: Mapping[str, Any]) -> str:
    kind = schema.get("type")
    if isinstance(kind, str):
        return _TYPE_WORDS.get(kind, kind)
    if isinstance(kind, list):
        return " or ".join(_TYPE_WORDS.get(str(k), str(k)) for k in kind)
    options = schema.get("anyOf") or schema.get("oneOf")
    if isinstance(options, list):
        return " or ".join(_expected(o) for o in options if isinstance(o, Mapping)) or "another value"
    if "enum" in schema:
        return "one of " + ", ".join(repr(v) for v in schema["enum"])
    if "const" in schema:
        return repr(schema["const"])
    return "another value"


def _leaf(error: Any) -> Any:
    """The most specific error under an anyOf/oneOf (skipping the 'or null' branch)."""
    while error.context:
        useful = [e for e in error.context
                  if not (e.validator == "type" and e.schema.get("type") == "null")]
        if not useful:
            break
        error = max(useful, key=lambda e: len(list(e.absolute_path)))
    return error


def _reason(error: Any, value: Any) -> str:
    leaf = _leaf(error)
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    path = list(leaf.absolute_path)[1:]
    at = f" (at {''.join(f'[{p!r}]' for p in path)})" if path else ""
    if leaf.validator in ("type", "anyOf", "oneOf", "enum", "const"):
        return f"= {shown}: expected {_expected(leaf.schema)}{at}"
    if leaf.validator == "required":
        missing = leaf.message.split(" is a required")[0]
        return f"= {shown}: {missing} is required{at}"
    return f"= {shown}: {leaf.message}{at}"


def _suggest(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_parameters(
    schema: Mapping[str, Any], parameters: Mapping[str, Any], *, templates: bool = False,
    check_required: bool = True,
) -> list[ParameterProblem]:
    """Every problem of ``parameters`` (defaults already merged in) under ``schema``.

    With ``templates``, values holding a template are taken as present but not
    type-checked (they are checked again after rendering). An empty schema accepts
    anything.
    """
    if not schema or not isinstance(schema.get("properties"), Mapping):
        return []
    properties: Mapping[str, Any] = schema["properties"]
    known = list(properties)
    problems: list[ParameterProblem] = []
    if schema.get("additionalProperties") is False:
        for name in parameters:
            if name not in properties:
                hint = _suggest(name, known) or (
                    f" (the flow takes {', '.join(repr(k) for k in known)})" if known
                    else " (the flow takes no parameters)")
                problems.append(ParameterProblem(name, f"is not a parameter{hint}"))
    if check_required:
        for name in schema.get("required", ()):
            if name not in parameters:
                problems.append(ParameterProblem(name, "is required and has no default"))
    validator = _validator_class()
    for name, value in parameters.items():
        sub = properties.get(name)
        if not isinstance(sub, Mapping) or (templates and is_template(value)):
            continue
        # Validate {name: value} against a one-property schema, so $refs resolve.
        # pydantic puts a parameter's own $defs inside its schema, referenced from the root.
        defs = {**schema.get("$defs", {}), **sub.get("$defs", {})}
        wrapped = {"type": "object", "properties": {name: sub}, "$defs": defs}
        try:
            errors = list(validator(wrapped).iter_errors({name: value}))
        except Exception as exc:  # a schema jsonschema cannot use: do not block the run
            del exc
            continue
        if errors:
            best = min(errors, key=lambda e: len(list(e.absolute_path)))
            problems.append(ParameterProblem(name, _reason(best, value)))
    return problems


def require_valid(
    deployment: str, schema: Mapping[str, Any], parameters: Mapping[str, Any], **options: Any
) -> None:
    """:class:`InvalidParameters` naming each problem, if there is any."""
    problems = check_parameters(schema, parameters, **options)
    if problems:
        raise InvalidParameters(deployment, problems)


def stored_parameter_problems(
    schema: Mapping[str, Any], defaults: Mapping[str, Any],
    triggers: Sequence[Mapping[str, Any]], schedules: Sequence[Mapping[str, Any]],
) -> list[str]:
    """What is wrong with the parameters a deployment stores, one line each.

    The defaults may leave required parameters out (a manual run supplies them), but
    each trigger's and schedule's runs get only defaults plus its own parameters, so
    those must be complete. Template values are checked when rendered.
    """
    out = [f"parameters: {p}" for p in check_parameters(schema, defaults, check_required=False)]
    for kind, items in (("trigger", triggers), ("schedule", schedules)):
        for i, item in enumerate(items):
            if item.get("enabled") is False or item.get("active") is False:
                continue
            own = item.get("parameters") or {}
            if not isinstance(own, Mapping):
                continue
            label = item.get("name") or f"#{i + 1}"
            for p in check_parameters(schema, {**defaults, **own}, templates=True):
                out.append(f"{kind} {label}: parameter {p}")
    return out
