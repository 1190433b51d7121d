"""Sandboxed Jinja templates over events: webhooks, trigger parameters, notifications.

One language everywhere a user maps an event to something. A template that is a
single expression keeps its value's type, so ``"{{ event.data.count }}"`` gives
the int ``3``, not the string ``"3"`` (Prefect delivers strings there, a known
annoyance). Anything else renders to a string. Templates run in Jinja's immutable
sandbox with a budget: source size, output size (counted while rendering), loop
iterations and wall time per evaluation, and the size of every string, list and
number an operator or filter makes (``'x' * 10**8`` and ``'x'|center(10**9)`` are
refused, also when Jinja would fold them while compiling). A failure raises
:class:`TemplateError` saying which template and why, and creates nothing. A part's
event loop renders with :func:`render_value_async`, in a worker thread with a hard
deadline, so a costly template does not stall the loop.

>>> render_value({"n": "{{ event.data.count }}", "msg": "got {{ event.data.count }}"},
...              {"event": {"data": {"count": 3}}})
{'n': 3, 'msg': 'got 3'}
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Any

from events.errors import FlowbusError

MAX_TEMPLATE_CHARS = 64 * 1024
MAX_OUTPUT_CHARS = 256 * 1024
MAX_RANGE = 10_000
MAX_ITERATIONS = 100_000  # loop iterations per evaluation, all loops together
MAX_SECONDS = 0.05  # wall time per evaluation, checked at every iteration and output chunk
MAX_INT_BITS = 4096  # the largest number an operator may make
MAX_CACHE_CHARS = 4 * 1024 * 1024  # template source kept compiled, all templates together
# How long an event loop waits for one off-loop evaluation, queueing included: the
# cooperative budget stops a render long before, unless one C-level step runs long.
MAX_WAIT_SECONDS = 1.0
RENDER_THREADS = 4
# Filters whose numeric arguments size their output (widths, counts).
_SIZING_FILTERS = ("center", "indent", "wordwrap", "truncate", "format", "replace", "batch",
                   "slice", "join", "filesizeformat", "random", "urlize")
_FORMAT_WIDTH = re.compile(r"\d{7,}")
_budget: contextvars.ContextVar[list[float]] = contextvars.ContextVar("template_budget")
_SINGLE_EXPRESSION = re.compile(r"^\s*\{\{(?P<expr>(?:(?!\}\}|\{\{).)*)\}\}\s*$", re.DOTALL)


class TemplateError(FlowbusError, ValueError):
    """A template could not be compiled or rendered."""


def _refuse(message: str) -> Exception:
    import jinja2

    return jinja2.exceptions.SecurityError(message)


def _check_size(value: Any) -> Any:
    if isinstance(value, str | bytes | list | tuple) and len(value) > MAX_OUTPUT_CHARS:
        raise _refuse(f"a value of {len(value)} items is over the limit of {MAX_OUTPUT_CHARS}")
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise _refuse(f"a number over {MAX_INT_BITS} bits is not allowed")
    return value


def _check_args(args: Iterable[Any]) -> None:
    """Numbers passed to a function or sizing filter are at most the output limit."""
    for arg in args:
        if isinstance(arg, int) and abs(arg) > MAX_OUTPUT_CHARS:
            raise _refuse(f"argument {arg} is over the limit of {MAX_OUTPUT_CHARS}")


def _check_format(pattern: Any) -> None:
    """A format string's widths are at most 6 digits (``'{:>999999999}'`` is refused)."""
    if isinstance(pattern, str) and _FORMAT_WIDTH.search(pattern):
        raise _refuse("format widths are limited to 6 digits")


def _guarded_filter(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        _check_args([*args, *kwargs.values()])
        if fn.__name__ == "do_format" and args:
            _check_format(args[0])
        texts = [a for a in args if isinstance(a, str)]
        if fn.__name__ == "do_replace" and len(texts) >= 3:
            _check_replace(*texts[:3])
        return _check_size(fn(*args, **kwargs))

    return guarded


def _check_replace(text: Any, old: Any, new: Any) -> None:
    if isinstance(text, str) and isinstance(old, str) and isinstance(new, str):
        grows = (text.count(old) if old else len(text) + 1) * len(new)
        if len(text) + grows > MAX_OUTPUT_CHARS:
            raise _refuse(f"replace() would make over {MAX_OUTPUT_CHARS} characters")


def _check_call(obj: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    if obj is _budgeted_iter:
        return
    _check_args([*args, *kwargs.values()])
    name = getattr(obj, "__name__", "")
    # The sandbox wraps str.format; the string is the wrapped method's self.
    bound = getattr(getattr(obj, "__wrapped__", obj), "__self__", None)
    if name in ("format", "format_map"):
        _check_format(bound)
    if name == "replace" and len(args) >= 2:
        _check_replace(bound, args[0], args[1])


def _check_binop(op: str, left: Any, right: Any) -> None:
    if op == "*":
        sized, count = (left, right) if isinstance(right, int) else (right, left)
        if isinstance(sized, str | list | tuple) and isinstance(count, int):
            if len(sized) * count > MAX_OUTPUT_CHARS:
                raise _refuse(f"repetition would make over {MAX_OUTPUT_CHARS} items")
        elif isinstance(left, int) and isinstance(right, int) and (
                left.bit_length() + right.bit_length() > MAX_INT_BITS):
            raise _refuse(f"a number over {MAX_INT_BITS} bits is not allowed")
    elif op == "**" and isinstance(left, int) and isinstance(right, int) and right > 0:
        if max(left.bit_length(), 1) * right > MAX_INT_BITS and abs(left) > 1:
            raise _refuse(f"a number over {MAX_INT_BITS} bits is not allowed")


def _tick() -> None:
    """Charge one loop iteration (or output chunk) to the running evaluation's budget."""
    budget = _budget.get(None)
    if budget is None:
        return
    budget[0] += 1
    if budget[0] > MAX_ITERATIONS:
        raise _refuse(f"loops are limited to {MAX_ITERATIONS} iterations per evaluation")
    if time.monotonic() > budget[1]:
        raise _refuse(f"evaluation took over {MAX_SECONDS * 1000:.0f} ms")


def _budgeted_iter(iterable: Iterable[Any]) -> Iterator[Any]:
    for item in iterable:
        _tick()
        yield item


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
            if obj is range:
                if len(range(*args)) > MAX_RANGE:
                    raise _refuse(f"range() is limited to {MAX_RANGE} items")
                return range(*args)
            _check_call(obj, args, kwargs)
            return _check_size(super().call(context, obj, *args, **kwargs))

        def call_binop(self, context: Any, op: str, left: Any, right: Any) -> Any:
            _check_binop(op, left, right)
            return _check_size(super().call_binop(context, op, left, right))

    env = _Env(undefined=jinja2.StrictUndefined, autoescape=False)
    env.intercepted_binops = frozenset({"*", "**", "+"})
    env.globals["range"] = range
    env.globals.pop("lipsum", None)
    env.globals["_flowbus_iter"] = _budgeted_iter
    for name in _SIZING_FILTERS:
        if name in env.filters:
            env.filters[name] = _guarded_filter(env.filters[name])
    return env


def _budget_loops(node: Any) -> Any:
    """Wrap the iterable of every ``{% for %}`` so each iteration charges the budget."""
    from jinja2 import nodes

    for loop in node.find_all(nodes.For):
        loop.iter = nodes.Call(nodes.Name("_flowbus_iter", "load"), [loop.iter], [], None, None)
    return node


def is_template(text: str) -> bool:
    return "{{" in text or "{%" in text


class _CompileCache:
    """Compiled templates, least recently used dropped first, bounded by source characters
    (compiled code grows with its source; constant folding can no longer blow it up)."""

    def __init__(self, max_chars: int) -> None:
        self.max_chars = max_chars
        self.chars = 0
        self._items: OrderedDict[str, tuple[Any, bool]] = OrderedDict()
        self._lock = threading.Lock()  # renders run in worker threads

    def get(self, source: str) -> tuple[Any, bool]:
        with self._lock:
            return self._get(source)

    def _get(self, source: str) -> tuple[Any, bool]:
        found = self._items.get(source)
        if found is not None:
            self._items.move_to_end(source)
            return found
        compiled = _compile_uncached(source)
        self._items[source] = compiled
        self.chars += len(source)
        while self.chars > self.max_chars and len(self._items) > 1:
            dropped, _ = self._items.popitem(last=False)
            self.chars -= len(dropped)
        return compiled


_cache = _CompileCache(MAX_CACHE_CHARS)


def _compile(source: str) -> tuple[Any, bool]:
    return _cache.get(source)


def _compile_uncached(source: str) -> tuple[Any, bool]:
    if len(source) > MAX_TEMPLATE_CHARS:
        raise TemplateError(f"template is {len(source)} characters, over {MAX_TEMPLATE_CHARS}")
    import jinja2

    env = _environment()
    single = _SINGLE_EXPRESSION.match(source)
    try:
        tree = env.parse(source)
        _check_constants(tree)
        if single:
            return env.compile_expression(single.group("expr"), undefined_to_none=False), True
        code = env.compile(_budget_loops(tree))
        return env.template_class.from_code(env, code, env.make_globals(None), None), False
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"template syntax error at line {exc.lineno}: {exc.message}") from None
    except jinja2.exceptions.SecurityError as exc:
        # Constant folding while compiling ran into the budget: the template is refused.
        raise TemplateError(f"template {_short(source)} is not allowed: {exc}") from None


_BINOPS = {"Mul": "*", "Pow": "**", "Add": "+"}


def _check_constants(tree: Any) -> None:
    """Apply the budget to what is known before any event: operators over constants and
    the constant arguments of calls and filters (so a bomb is refused at creation)."""
    from jinja2 import nodes

    for node in tree.find_all((nodes.Mul, nodes.Pow, nodes.Add, nodes.Call, nodes.Filter)):
        if isinstance(node, nodes.Call) and isinstance(node.node, nodes.Getattr) and (
                node.node.attr in ("format", "format_map")
                and isinstance(node.node.node, nodes.Const)):
            _check_format(node.node.node.value)
        if isinstance(node, nodes.Filter) and node.name == "format" and isinstance(
                node.node, nodes.Const):
            _check_format(node.node.value)
        parts = node.args if isinstance(node, nodes.Call | nodes.Filter) else [node]
        for part in parts:
            try:
                value = _constant(part)
            except nodes.Impossible:
                continue
            _check_args([value] if part is not node else [])


def _constant(node: Any) -> Any:
    """The value of a constant expression, each operator checked before it is computed;
    ``Impossible`` (jinja2) when it depends on the context."""
    from jinja2 import nodes

    if isinstance(node, nodes.Const):
        return node.value
    op = _BINOPS.get(type(node).__name__)
    if op is None:
        raise nodes.Impossible()
    left, right = _constant(node.left), _constant(node.right)
    _check_binop(op, left, right)
    return _check_size({"*": lambda: left * right, "**": lambda: left**right,
                        "+": lambda: left + right}[op]())


def check_template(source: str) -> None:
    """Compile ``source`` (at definition time), raising :class:`TemplateError` if it is wrong."""
    _compile(source)


def render(source: str, context: Mapping[str, Any]) -> Any:
    """Render one template; a single ``{{ expression }}`` keeps its type."""
    if not is_template(source):
        return source
    import jinja2

    compiled, single = _compile(source)
    token = _budget.set([0.0, time.monotonic() + MAX_SECONDS])
    try:
        if single:
            value = compiled(**context)
            if isinstance(value, jinja2.Undefined):
                value._fail_with_undefined_error()
            return value
        out = _render_bounded(compiled, context, source)
    except jinja2.UndefinedError as exc:
        raise TemplateError(f"template {_short(source)}: {exc.message}") from None
    except jinja2.exceptions.SecurityError as exc:
        raise TemplateError(f"template {_short(source)} is not allowed: {exc}") from None
    except RecursionError:
        raise TemplateError(f"template {_short(source)} recursed too deeply") from None
    except TemplateError:
        raise
    except Exception as exc:  # user templates can fail in any way; say how, create nothing
        raise TemplateError(f"template {_short(source)} failed: {type(exc).__name__}: {exc}") from None
    finally:
        _budget.reset(token)
    return out


def _render_bounded(compiled: Any, context: Mapping[str, Any], source: str) -> str:
    """Render chunk by chunk, stopping as soon as the output passes its limit."""
    parts: list[str] = []
    size = 0
    for chunk in compiled.generate(**context):
        size += len(chunk)
        if size > MAX_OUTPUT_CHARS:
            raise TemplateError(
                f"template {_short(source)} rendered over {MAX_OUTPUT_CHARS} characters")
        parts.append(chunk)
        _tick()
    return "".join(parts)


def render_value(value: Any, context: Mapping[str, Any]) -> Any:
    """Render every string inside ``value`` (dicts and lists walked), keeping types."""
    if isinstance(value, str):
        return render(value, context)
    if isinstance(value, Mapping):
        return {k: render_value(v, context) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [render_value(v, context) for v in value]
    return value


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _renderers() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(RENDER_THREADS, thread_name_prefix="flowbus-templates")
        return _pool


def has_template(value: Any) -> bool:
    """Whether ``value`` (walked like :func:`render_value`) holds a template to render."""
    if isinstance(value, str):
        return is_template(value)
    if isinstance(value, Mapping):
        return any(has_template(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(has_template(v) for v in value)
    return False


async def render_value_async(value: Any, context: Mapping[str, Any]) -> Any:
    """:func:`render_value` off the event loop: in one of :data:`RENDER_THREADS` worker
    threads, so the loop keeps serving while a template renders.

    The render stops itself at its budget (:data:`MAX_SECONDS` of wall time, checked at
    every loop iteration and output chunk); the loop waits at most
    :data:`MAX_WAIT_SECONDS` (queueing included) and then fails this evaluation with
    :class:`TemplateError`. A value without templates is returned at once.
    """
    if not has_template(value):
        return render_value(value, context)
    loop = asyncio.get_running_loop()
    job = loop.run_in_executor(_renderers(), contextvars.copy_context().run, render_value, value, context)
    try:
        return await asyncio.wait_for(job, MAX_WAIT_SECONDS)
    except TimeoutError:
        raise TemplateError(
            f"template evaluation did not finish within {MAX_WAIT_SECONDS:g} s") from None


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
