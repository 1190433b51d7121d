"""Helpers on functions and their parameters (Prefect's ``prefect.utilities.callables``).

- :func:`get_call_parameters`: the parameters dict a call binds (defaults applied).
- :func:`parameters_to_args_kwargs` / :func:`call_with_parameters`: back from that dict
  to a call; a parameter with a default goes by keyword.
- :func:`explode_variadic_parameter` / :func:`collapse_variadic_parameters`: move
  ``**kwargs`` entries to the top level and back.
- :func:`cloudpickle_wrapped_call`: a call that the standard pickler can carry to
  another process (arguments and result travel as cloudpickle bytes).
- :func:`parameter_schema`: the JSON schema of a function's (or a flow's) parameters,
  as a :class:`ParameterSchema` (``.model_dump_for_openapi()`` gives the dict).

Example::

    def add(a, b=1):
        return a + b

    params = get_call_parameters(add, (2,), {})        # {"a": 2, "b": 1}
    assert parameters_to_args_kwargs(add, params) == ((2,), {"b": 1})
    assert call_with_parameters(add, params) == 3
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Callable
from typing import Any, Literal, TypeVar

import cloudpickle
import pydantic

from flowbus.exceptions import ParameterBindError, SignatureMismatchError

R = TypeVar("R")
_P = inspect.Parameter


def get_call_parameters(
    fn: Callable[..., Any], call_args: tuple[Any, ...], call_kwargs: dict[str, Any], apply_defaults: bool = True
) -> dict[str, Any]:
    """The parameter -> value mapping of ``fn(*call_args, **call_kwargs)``, in signature
    order; ``ParameterBindError`` when the call does not fit the signature."""
    try:
        bound = inspect.signature(fn).bind(*call_args, **call_kwargs)
    except TypeError as exc:
        raise ParameterBindError.from_bind_failure(fn, exc, call_args, call_kwargs) from None
    if apply_defaults:
        bound.apply_defaults()
    return dict(bound.arguments)


def get_parameter_defaults(fn: Callable[..., Any]) -> dict[str, Any]:
    """The default value of each parameter of ``fn`` that has one."""
    return {
        name: p.default for name, p in inspect.signature(fn).parameters.items() if p.default is not _P.empty
    }


def _var_keyword(fn: Callable[..., Any]) -> str | None:
    for name, p in inspect.signature(fn).parameters.items():
        if p.kind is _P.VAR_KEYWORD:
            return name
    return None


def explode_variadic_parameter(fn: Callable[..., Any], parameters: dict[str, Any]) -> dict[str, Any]:
    """``parameters`` with the entries of ``fn``'s ``**kwargs`` parameter moved to the top level."""
    name = _var_keyword(fn)
    if name is None:
        return parameters
    out = dict(parameters)
    out.update(out.pop(name, None) or {})
    return out


def collapse_variadic_parameters(fn: Callable[..., Any], parameters: dict[str, Any]) -> dict[str, Any]:
    """``parameters`` with the names ``fn``'s signature lacks moved into its ``**kwargs``
    parameter; ValueError when there are such names and ``fn`` has no ``**kwargs``."""
    known = inspect.signature(fn).parameters
    extra = [key for key in parameters if key not in known]
    if not extra:
        return parameters
    name = _var_keyword(fn)
    if name is None:
        raise ValueError(
            f"Signature for {fn} does not include any variadic keyword argument "
            "but parameters were given that are not present in the signature."
        )
    out = {key: value for key, value in parameters.items() if key in known}
    out[name] = {key: parameters[key] for key in extra}
    return out


def parameters_to_args_kwargs(
    fn: Callable[..., Any], parameters: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The ``(args, kwargs)`` that call ``fn`` with ``parameters``.

    Positional-only parameters, and positional-or-keyword ones without a default, go
    in ``args`` (up to the first one missing); the others, and ``**kwargs`` entries, go
    by keyword. ``SignatureMismatchError`` when ``parameters`` names a parameter ``fn``
    lacks; TypeError when a ``**kwargs`` entry repeats a named parameter.
    """
    sig = inspect.signature(fn)
    names = list(sig.parameters)
    if any(key not in sig.parameters for key in parameters):
        raise SignatureMismatchError.from_bad_params(names, list(parameters))
    has_star_args = any(p.kind is _P.VAR_POSITIONAL for p in sig.parameters.values())
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    positional = True
    for p in sig.parameters.values():
        if p.name not in parameters:
            if p.kind in (_P.POSITIONAL_ONLY, _P.POSITIONAL_OR_KEYWORD):
                positional = False
            continue
        value = parameters[p.name]
        if p.kind is _P.POSITIONAL_ONLY or (
            p.kind is _P.POSITIONAL_OR_KEYWORD and positional and (has_star_args or p.default is _P.empty)
        ):
            args.append(value)
        elif p.kind is _P.POSITIONAL_OR_KEYWORD:
            positional = False
            kwargs[p.name] = value
        elif p.kind is _P.VAR_POSITIONAL:
            args.extend(value)
        elif p.kind is _P.KEYWORD_ONLY:
            kwargs[p.name] = value
        else:
            overlap = sorted(set(value) & set(kwargs))
            if overlap:
                raise TypeError(
                    f"{getattr(fn, '__name__', type(fn).__name__)}() got multiple values for "
                    f"argument(s): {', '.join(overlap)}"
                )
            kwargs.update(value)
    return tuple(args), kwargs


def call_with_parameters(fn: Callable[..., R], parameters: dict[str, Any]) -> R:
    """Call ``fn`` with a parameters dict from :func:`get_call_parameters`."""
    args, kwargs = parameters_to_args_kwargs(fn, parameters)
    return fn(*args, **kwargs)


def _run_pickled_call(payload: bytes) -> bytes:
    fn, args, kwargs = cloudpickle.loads(payload)
    return bytes(cloudpickle.dumps(fn(*args, **kwargs)))


def cloudpickle_wrapped_call(__fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Callable[[], bytes]:
    """A no-argument callable, picklable by the standard pickler, that runs
    ``__fn(*args, **kwargs)`` and returns its result as cloudpickle bytes (for
    ``multiprocessing`` and process pools, which pickle with the standard pickler)."""
    return functools.partial(_run_pickled_call, cloudpickle.dumps((__fn, args, kwargs)))


class ParameterSchema(pydantic.BaseModel):
    """The JSON schema of a function's parameters (an OpenAPI ``Schema`` object)."""

    title: Literal["Parameters"] = "Parameters"
    type: Literal["object"] = "object"
    properties: dict[str, Any] = pydantic.Field(default_factory=dict)
    required: list[str] = pydantic.Field(default_factory=list)
    definitions: dict[str, Any] = pydantic.Field(default_factory=dict)

    def model_dump_for_openapi(self) -> dict[str, Any]:
        """The schema as a dict; ``required`` left out when empty."""
        out = self.model_dump(mode="python", exclude_none=True)
        if not out["required"]:
            del out["required"]
        return out


_ARGS_HEADER = re.compile(r"^\s*(Args|Arguments|Parameters):\s*$")
_ARG_LINE = re.compile(r"^(\s*)(\*{0,2}\w+)\s*(\([^)]*\))?\s*:\s*(.*)$")


def parameter_docstrings(docstring: str | None) -> dict[str, str]:
    """Parameter name -> description, from the ``Args:`` section of a Google-style docstring."""
    out: dict[str, str] = {}
    if not docstring:
        return out
    lines = inspect.cleandoc(docstring).splitlines()
    in_args = False
    indent: int | None = None
    current: str | None = None
    for line in lines:
        if _ARGS_HEADER.match(line):
            in_args, indent, current = True, None, None
            continue
        if not in_args:
            continue
        if not line.strip():
            current = None
            continue
        width = len(line) - len(line.lstrip())
        if width == 0:
            in_args = False
            continue
        match = _ARG_LINE.match(line)
        if match and (indent is None or width == indent):
            indent = width
            current = match.group(2)
            out[current] = match.group(4).strip()
        elif current is not None:
            out[current] = (out[current] + "\n" + line.strip()).strip()
    return out


def parameter_schema(fn: Callable[..., Any]) -> ParameterSchema:
    """The JSON schema of ``fn``'s parameters (a function, a ``@flow`` or a ``@task``):
    each property has its type's schema, ``title``, ``position``, its ``default`` when
    JSON can carry it, and the docstring's ``description``."""
    from flowbus.entrypoints import parameter_schema as _schema

    target = getattr(fn, "fn", fn)
    raw = _schema(target)
    docs = parameter_docstrings(inspect.getdoc(target))
    properties: dict[str, Any] = {}
    definitions: dict[str, Any] = {}
    for position, (name, prop) in enumerate(raw["properties"].items()):
        prop = dict(prop)
        definitions.update(prop.pop("$defs", {}))
        if name in docs:
            prop["description"] = docs[name]
        prop["position"] = position
        properties[name] = dict(sorted(prop.items()))
    return ParameterSchema(properties=properties, required=list(raw.get("required", [])), definitions=definitions)


__all__ = [
    "ParameterSchema",
    "call_with_parameters",
    "cloudpickle_wrapped_call",
    "collapse_variadic_parameters",
    "explode_variadic_parameter",
    "get_call_parameters",
    "get_parameter_defaults",
    "parameter_docstrings",
    "parameter_schema",
    "parameters_to_args_kwargs",
]
