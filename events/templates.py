"""Sandboxed Jinja templates over events: webhooks, trigger parameters, notifications.

One language everywhere a user maps an event to something. A template that is a
single expression keeps its value's type, so ``"{{ event.data.count }}"`` gives
the int ``3``, not the string ``"3"`` (Prefect delivers strings there, a known
annoyance). Anything else renders to a string. Templates run in Jinja's immutable
sandbox with limits on source and output size; a failure raises
:class:`TemplateError` saying which template and why, and creates nothing.

>>> render_value({"n": "{{ event.data.count }}", "msg": "got {{ event.data.count }}"},
...              {"event": {"data": {"count": 3}}})
{'n': 3, 'msg': 'got 3'}
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from events.errors import FlowbusError

MAX_TEMPLATE_CHARS = 64 * 1024
MAX_OUTPUT_CHARS = 256 * 1024
MAX_RANGE = 10_000
_SINGLE_EXPRESSION = re.compile(r"^\s*\{\{(?P<expr>(?:(?!\}\}|\{\{).)*)\}\}\s*$", re.DOTALL)


class TemplateError(FlowbusError, ValueError):
    """A template could not be compiled or rendered."""


@lru_cache(maxsize=1)
def _environment() -> Any:
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class _Env(ImmutableSandboxedEnvironment):
        def getattr(self, obj: Any, attribute: str) -> Any:
            # For event data a key beats a method: event.data.items is the "items" field.
            if isinstance(obj, Mapping) and attribute in obj:
                return obj[attribute]
            return super().getattr(obj, attribute)

        def call(self, context: Any, obj: Any, *args: Any, **kwargs: Any) -> Any:
            if obj is range and args and max(abs(a) for a in args if isinstance(a, int)) > MAX_RANGE:
                raise jinja2.exceptions.SecurityError(f"range() is limited to {MAX_RANGE} items")
            return super().call(context, obj, *args, **kwargs)

    env = _Env(undefined=jinja2.StrictUndefined, autoescape=False)
    env.globals["range"] = range
    return env


def is_template(text: str) -> bool:
    return "{{" in text or "{%" in text


@lru_cache(maxsize=2048)
def _compile(source: str) -> tuple[Any, bool]:
    if len(source) > MAX_TEMPLATE_CHARS:
        raise TemplateError(f"template is {len(source)} characters, over {MAX_TEMPLATE_CHARS}")
    import jinja2

    env = _environment()
    single = _SINGLE_EXPRESSION.match(source)
    try:
        if single:
            return env.compile_expression(single.group("expr"), undefined_to_none=False), True
        return env.from_string(source), False
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"template syntax error at line {exc.lineno}: {exc.message}") from None


def check_template(source: str) -> None:
    """Compile ``source`` (at definition time), raising :class:`TemplateError` if it is wrong."""
    _compile(source)


def render(source: str, context: Mapping[str, Any]) -> Any:
    """Render one template; a single ``{{ expression }}`` keeps its type."""
    if not is_template(source):
        return source
    import jinja2

    compiled, single = _compile(source)
    try:
        if single:
            value = compiled(**context)
            if isinstance(value, jinja2.Undefined):
                value._fail_with_undefined_error()
            return value
        out = compiled.render(**context)
    except jinja2.UndefinedError as exc:
        raise TemplateError(f"template {_short(source)}: {exc.message}") from None
    except jinja2.exceptions.SecurityError as exc:
        raise TemplateError(f"template {_short(source)} is not allowed: {exc}") from None
    except RecursionError:
        raise TemplateError(f"template {_short(source)} recursed too deeply") from None
    except Exception as exc:  # user templates can fail in any way; say how, create nothing
        raise TemplateError(f"template {_short(source)} failed: {type(exc).__name__}: {exc}") from None
    if len(out) > MAX_OUTPUT_CHARS:
        raise TemplateError(f"template {_short(source)} rendered {len(out)} characters, over {MAX_OUTPUT_CHARS}")
    return out


def render_value(value: Any, context: Mapping[str, Any]) -> Any:
    """Render every string inside ``value`` (dicts and lists walked), keeping types."""
    if isinstance(value, str):
        return render(value, context)
    if isinstance(value, Mapping):
        return {k: render_value(v, context) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [render_value(v, context) for v in value]
    return value


def check_value(value: Any) -> None:
    """Compile every template inside ``value``; raise on the first bad one."""
    if isinstance(value, str):
        if is_template(value):
            check_template(value)
    elif isinstance(value, Mapping):
        for item in value.values():
            check_value(item)
    elif isinstance(value, list | tuple):
        for item in value:
            check_value(item)


def _short(source: str) -> str:
    return repr(source if len(source) <= 60 else source[:57] + "...")
