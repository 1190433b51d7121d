"""Binding call arguments to parameters, validating them, and naming runs."""

from __future__ import annotations

import inspect
import random
import typing
from collections.abc import Callable
from typing import Any

from flowbus.exceptions import ParameterBindError, ParameterTypeError

_P = inspect.Parameter


class CallShape:
    """A function's signature, precomputed so binding is a dict build on the hot path."""

    __slots__ = ("defaults", "fn", "names", "nameset", "signature", "simple")

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.signature = inspect.signature(fn)
        params = list(self.signature.parameters.values())
        self.names = tuple(p.name for p in params)
        self.nameset = frozenset(self.names)
        self.defaults = {p.name: p.default for p in params if p.default is not _P.empty}
        # "simple": every parameter can be passed by keyword, so `fn(**parameters)` works.
        self.simple = all(p.kind in (_P.POSITIONAL_OR_KEYWORD, _P.KEYWORD_ONLY) for p in params)

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """The parameters dict for a call, in signature order; a clear error if it does not fit."""
        nargs = len(args)
        if self.simple and nargs <= len(self.names):
            parameters: dict[str, Any] = {}
            used = 0
            for i, name in enumerate(self.names):
                if i < nargs:
                    parameters[name] = args[i]
                elif name in kwargs:
                    parameters[name] = kwargs[name]
                    used += 1
                elif name in self.defaults:
                    parameters[name] = self.defaults[name]
                else:
                    return self._bind_slow(args, kwargs)
            # Every keyword must have been consumed once (else: unknown or duplicated).
            if used == len(kwargs):
                return parameters
        return self._bind_slow(args, kwargs)

    def _bind_slow(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise ParameterBindError(
                f"Cannot call {self.fn.__qualname__}{self.signature}: {exc}"
            ) from None
        bound.apply_defaults()
        return dict(bound.arguments)

    def to_call(self, parameters: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The (args, kwargs) that call the function with `parameters`."""
        if self.simple:
            return (), parameters
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        for p in self.signature.parameters.values():
            if p.name not in parameters:
                continue
            value = parameters[p.name]
            if p.kind in (_P.POSITIONAL_ONLY, _P.POSITIONAL_OR_KEYWORD):
                args.append(value)
            elif p.kind is _P.VAR_POSITIONAL:
                args.extend(value)
            elif p.kind is _P.KEYWORD_ONLY:
                kwargs[p.name] = value
            else:
                kwargs.update(value)
        return tuple(args), kwargs


class ParameterValidator:
    """Validates and coerces parameters against the function's type hints with pydantic.

    pydantic is imported on first use, and each parameter gets its own `TypeAdapter`,
    so an error names exactly the parameter that was wrong.
    """

    __slots__ = ("_adapters", "fn")

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self._adapters: dict[str, Any] | None = None

    def _build(self) -> dict[str, Any]:
        import pydantic

        try:
            hints = typing.get_type_hints(self.fn, include_extras=True)
        except Exception:  # unresolvable forward references: validate what we can
            hints = dict(getattr(self.fn, "__annotations__", {}))
        adapters: dict[str, Any] = {}
        for p in inspect.signature(self.fn).parameters.values():
            hint = hints.get(p.name)
            if hint is None or isinstance(hint, str) or p.kind in (_P.VAR_POSITIONAL, _P.VAR_KEYWORD):
                continue
            try:
                adapters[p.name] = pydantic.TypeAdapter(hint)
            except pydantic.PydanticSchemaGenerationError:
                adapters[p.name] = pydantic.TypeAdapter(
                    hint, config=pydantic.ConfigDict(arbitrary_types_allowed=True)
                )
            except Exception:  # a hint pydantic cannot use at all: leave it unchecked
                continue
        return adapters

    def validate(self, parameters: dict[str, Any]) -> dict[str, Any]:
        """Coerced parameters; `ParameterTypeError` naming each bad parameter otherwise."""
        import pydantic

        if self._adapters is None:
            self._adapters = self._build()
        out = dict(parameters)
        problems: list[str] = []
        for name, adapter in self._adapters.items():
            if name not in parameters:
                continue
            try:
                out[name] = adapter.validate_python(parameters[name])
            except pydantic.ValidationError as exc:
                reasons = "; ".join(e["msg"] for e in exc.errors())
                problems.append(f"parameter {name!r} = {parameters[name]!r}: {reasons}")
        if problems:
            raise ParameterTypeError(
                f"Invalid parameters for {self.fn.__qualname__}: " + "; ".join(problems)
            )
        return out


_ADJECTIVES = (
    "amber", "brave", "calm", "daring", "eager", "fancy", "gentle", "happy", "icy",
    "jolly", "keen", "lively", "mellow", "nimble", "olive", "proud", "quick", "rapid",
    "silver", "tidy", "urban", "vivid", "witty", "young", "zesty",
)
_ANIMALS = (
    "alpaca", "badger", "cheetah", "dolphin", "eagle", "falcon", "gecko", "heron",
    "ibis", "jaguar", "koala", "lemur", "marmot", "narwhal", "otter", "panda", "quail",
    "raven", "salmon", "tapir", "urchin", "vole", "walrus", "yak", "zebra",
)


def random_run_name() -> str:
    """A readable name for a flow run, e.g. ``brave-otter``."""
    return f"{random.choice(_ADJECTIVES)}-{random.choice(_ANIMALS)}"


def render_run_name(
    template: str | Callable[..., str], parameters: dict[str, Any], what: str
) -> str:
    """A run name from a template over the parameters, or from a callable.

    A callable may take no argument or the parameters dict.
    """
    if callable(template):
        try:
            n_params = len(inspect.signature(template).parameters)
        except (TypeError, ValueError):
            n_params = 0
        name = template(parameters) if n_params else template()
        if not isinstance(name, str):
            raise TypeError(f"{what} callable must return a str, got {type(name).__name__}")
        return name
    if not isinstance(template, str):  # set on the flow or task after it was made
        raise TypeError(f"Expected string or callable for {what!r}; got {type(template).__name__} instead.")
    try:
        return template.format(**parameters)
    except (KeyError, IndexError) as exc:
        raise ParameterBindError(
            f"{what} {template!r} refers to {exc} which is not a parameter "
            f"(parameters: {sorted(parameters)})"
        ) from None


def unwrap_method(fn: Any) -> tuple[Any, str | None]:
    """`fn` without a classmethod/staticmethod wrapper, and which wrapper it had."""
    if isinstance(fn, classmethod):
        return fn.__func__, "class"
    if isinstance(fn, staticmethod):
        return fn.__func__, "static"
    return fn, None


def rewrap_method(fn: Any, kind: str | None) -> Any:
    """The inverse of `unwrap_method`."""
    if kind == "class":
        return classmethod(fn)
    if kind == "static":
        return staticmethod(fn)
    return fn
