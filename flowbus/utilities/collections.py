"""Helpers on Python collections, by Prefect's path (`prefect.utilities.collections`).

The one the others lean on is `visit_collection`: it calls a function on a value and
on everything inside it (lists, tuples, sets, dicts and their keys, dataclasses,
pydantic models, annotations), and with ``return_data=True`` gives back a copy with the
function's results in place, copying only the containers that changed.

Example::

    from flowbus.utilities.collections import dict_to_flatdict, visit_collection

    visit_collection([1, [2, 3]], lambda x: x * 10 if isinstance(x, int) else x, return_data=True)
    # [10, [20, 30]]
    dict_to_flatdict({"a": {"b": 1}})  # {("a", "b"): 1}
"""

from __future__ import annotations

import dataclasses
import enum
import io
import itertools
import types
from collections.abc import Callable, Collection, Hashable, Iterable, Iterator, Sequence, Set
from typing import Any, TypeVar, cast
from unittest import mock

import pydantic

from flowbus.utilities.annotations import BaseAnnotation, Quote, opaque, quote

T = TypeVar("T")
NestedDict = dict[Any, Any]


class AutoEnum(str, enum.Enum):  # noqa: UP042 - StrEnum's str() differs from Prefect's
    """A string enum whose values are its member names: ``RED = AutoEnum.auto()`` is ``"RED"``.

    Members are `str`, so they serialise to JSON as their names.
    """

    @staticmethod
    def _generate_next_value_(name: str, start: int, count: int, last_values: list[Any]) -> str:
        return name

    @staticmethod
    def auto() -> Any:
        """`enum.auto()`, so that one import is enough."""
        return enum.auto()

    def __repr__(self) -> str:
        return f"{type(self).__name__}.{self.value}"


def dict_to_flatdict(dct: NestedDict) -> dict[tuple[Any, ...], Any]:
    """A nested dict as one level keyed by key paths: ``{"a": {"b": 1}}`` -> ``{("a", "b"): 1}``.

    Empty dicts are leaves; the result has the type of `dct`.
    """
    flat: list[tuple[tuple[Any, ...], Any]] = []
    stack: list[tuple[tuple[Any, ...], Iterator[tuple[Any, Any]]]] = [((), iter(dct.items()))]
    while stack:
        prefix, items = stack[-1]
        entry = next(items, None)
        if entry is None:
            stack.pop()
            continue
        key, value = entry
        if isinstance(value, dict) and value:
            stack.append(((*prefix, key), iter(value.items())))
        else:
            flat.append(((*prefix, key), value))
    return cast(dict[tuple[Any, ...], Any], type(dct)(flat))


def flatdict_to_dict(dct: dict[tuple[Any, ...], Any]) -> NestedDict:
    """The inverse of `dict_to_flatdict`; nested dicts have the type of `dct`."""
    kind = type(dct)
    nested: NestedDict = kind()
    for path, value in dct.items():
        node = nested
        for key in path[:-1]:
            if key not in node:
                node[key] = kind()
            node = node[key]
        node[path[-1]] = value
    return nested


def isiterable(obj: Any) -> bool:
    """Whether `obj` can be iterated, strings, bytes and IO objects excepted."""
    if isinstance(obj, str | bytes | io.IOBase):
        return False
    try:
        iter(obj)
    except TypeError:
        return False
    return True


def ensure_iterable(obj: Any) -> Collection[Any]:
    """`obj` itself when it is a sequence or a set, else ``[obj]``."""
    return cast(Collection[Any], obj) if isinstance(obj, Sequence | Set) else [obj]


def listrepr(objs: Iterable[Any], sep: str = " ") -> str:
    """The reprs of `objs` joined by `sep`."""
    return sep.join(map(repr, objs))


def extract_instances(objects: Iterable[Any], types: type[Any] | tuple[type[Any], ...] = object) -> Any:
    """The objects that are instances of `types`: a list for one type, else a dict by type."""
    wanted = ensure_iterable(types)
    found: dict[type[Any], list[Any]] = {}
    for obj in objects:
        for kind in wanted:
            if isinstance(obj, kind):
                found.setdefault(kind, []).append(obj)
    if len(wanted) == 1:
        return found[next(iter(wanted))]
    return found


def batched_iterable(iterable: Iterable[T], size: int) -> Iterator[tuple[T, ...]]:
    """Tuples of `size` items from `iterable` (the last one may be shorter)."""
    items = iter(iterable)
    while batch := tuple(itertools.islice(items, size)):
        yield batch


def distinct(iterable: Iterable[T], key: Callable[[T], Hashable] | None = None) -> Iterator[T]:
    """The items of `iterable` whose key (the item itself by default) was not seen before."""
    seen: set[Hashable] = set()
    for item in iterable:
        marker = item if key is None else key(item)
        if marker not in seen:
            seen.add(marker)
            yield item


class StopVisiting(BaseException):
    """Raised by a `visit_collection` function: keep this value as it is and do not go inside it."""


def visit_collection(
    expr: Any,
    visit_fn: Callable[..., Any],
    *,
    return_data: bool = False,
    max_depth: int = -1,
    context: dict[str, Any] | None = None,
    remove_annotations: bool = False,
    _seen: dict[int, Any] | None = None,
) -> Any:
    """Call `visit_fn` on `expr` and on every value inside it, outermost first.

    `visit_fn` sees a container before its items. With ``return_data=True`` the value
    it returns takes the visited one's place, and the result is a copy of `expr` in
    which only the containers whose items changed are new objects (None otherwise).
    Lists, tuples (named ones too), sets, dicts (keys and values), dataclass instances,
    pydantic models (their fields and extras, not private attributes) and annotations
    are entered; generators, mocks and anything else are not.

    - `max_depth`: how many levels to enter (0: only `expr` itself; negative: no limit).
    - `context`: when given, `visit_fn(value, context)` is called with a dict each level
      gets a copy of; inside an annotation it holds the annotation under ``"annotation"``.
    - `remove_annotations`: with `return_data`, annotations are replaced by their content.
    - `visit_fn` may raise `StopVisiting` to keep a value as is and not enter it.
      `opaque(x)`: `x` is visited but not entered. A value met twice (shared or
      circular references) is visited once and gives the same result both times.
    """
    visitor = _Visitor(visit_fn, return_data, remove_annotations, {} if _seen is None else _seen)
    return visitor.visit(expr, max_depth, context)


class _Visitor:
    def __init__(self, fn: Callable[..., Any], return_data: bool, unwrap: bool, seen: dict[int, Any]) -> None:
        self.fn, self.return_data, self.unwrap, self.seen = fn, return_data, unwrap, seen

    def call(self, value: Any, context: dict[str, Any] | None) -> Any:
        return self.fn(value) if context is None else self.fn(value, context)

    def visit(self, expr: Any, depth: int, context: dict[str, Any] | None) -> Any:
        try:
            visited = self.call(expr, context)
        except StopVisiting:
            visited, depth = expr, 0
        node = visited if self.return_data else expr
        if depth == 0:
            return visited if self.return_data else None
        key = id(node)
        if key in self.seen:
            return self.seen[key] if self.return_data else None
        self.seen[key] = node
        result = self._children(node, depth, context)
        if self.return_data:
            self.seen[key] = result
            return result
        return None

    def _child(self, value: Any, depth: int, context: dict[str, Any] | None) -> Any:
        return self.visit(value, depth - 1, None if context is None else dict(context))

    def _children(self, node: Any, depth: int, context: dict[str, Any] | None) -> Any:
        if isinstance(node, types.GeneratorType | types.AsyncGeneratorType | mock.Mock):
            return node
        if isinstance(node, BaseAnnotation):
            return self._annotation(node, depth, context)
        if isinstance(node, list | tuple | set):
            items = [self._child(item, depth, context) for item in node]
            if not self.return_data or all(new is old for new, old in zip(items, node, strict=True)):
                return node
            make = getattr(type(node), "_make", type(node))  # named tuples take no iterable
            return make(items)
        if isinstance(node, dict):
            pairs = [(self._child(k, depth, context), self._child(v, depth, context)) for k, v in node.items()]
            if not self.return_data or all(
                nk is k and nv is v for (nk, nv), (k, v) in zip(pairs, node.items(), strict=True)
            ):
                return node
            return type(node)(pairs)
        if dataclasses.is_dataclass(node) and not isinstance(node, type):
            names = [f.name for f in dataclasses.fields(node)]
            values = {name: self._child(getattr(node, name), depth, context) for name in names}
            if not self.return_data or all(values[name] is getattr(node, name) for name in names):
                return node
            return dataclasses.replace(node, **values)
        if isinstance(node, pydantic.BaseModel):
            return self._model(node, depth, context)
        return node

    def _annotation(self, node: BaseAnnotation[Any], depth: int, context: dict[str, Any] | None) -> Any:
        if context is not None:
            context["annotation"] = node
        inner = node.unwrap()
        if isinstance(node, opaque):
            try:
                value = self.call(inner, context)
            except StopVisiting:
                value = inner
        else:
            value = self._child(inner, depth, context)
        if not self.return_data:
            return node
        if self.unwrap:
            return value
        return node if value is inner else node.rewrap(value)

    def _model(self, node: pydantic.BaseModel, depth: int, context: dict[str, Any] | None) -> Any:
        # Iterating a model reads its stored field values (extras included) without
        # going through attribute access, which a model may override.
        original = dict(node)
        values = {name: self._child(value, depth, context) for name, value in original.items()}
        if not self.return_data or all(values[name] is original[name] for name in original):
            return node
        copy = type(node).model_construct(_fields_set=set(node.model_fields_set), **values)
        private = getattr(node, "__pydantic_private__", None)
        if private:
            for name, value in private.items():
                setattr(copy, name, value)
        return copy


def remove_nested_keys(keys_to_remove: list[Hashable], obj: Any) -> Any:
    """A copy of the dict `obj` without `keys_to_remove` at any depth; a non-dict as is."""
    if not isinstance(obj, dict):
        return obj
    return {k: remove_nested_keys(keys_to_remove, v) for k, v in obj.items() if k not in keys_to_remove}


def _key_path(keys: str | list[Any]) -> list[Any]:
    # "a.b[1].c" and ["a", "b", 1, "c"] name the same place.
    if isinstance(keys, str):
        return keys.replace("[", ".").replace("]", "").split(".")
    return list(keys)


def get_from_dict(dct: Any, keys: str | list[Any], default: Any = None) -> Any:
    """The value at a key path (``"a.b[1]"`` or ``["a", "b", 1]``) in nested dicts and
    lists, or `default` when the path does not exist.

    Example: ``get_from_dict({"a": {"b": [0, 2]}}, "a.b[1]")`` is ``2``.
    """
    value = dct
    try:
        for key in _key_path(keys):
            try:
                key = int(key)
            except ValueError:
                pass
            value = value[key]
    except (TypeError, KeyError, IndexError):
        return default
    return value


def set_in_dict(dct: NestedDict, keys: str | list[Any], value: Any) -> None:
    """Set the value at a key path, creating the dicts on the way.

    Raises `TypeError` when a key on the way holds something other than a dict.
    """
    path = _key_path(keys)
    node = dct
    for key in path[:-1]:
        child = node.setdefault(key, {}) if key not in node else node[key]
        if not isinstance(child, dict):
            raise TypeError(f"Key path exists and contains a non-dict value: {path}")
        node = child
    node[path[-1]] = value


def deep_merge(dct: NestedDict, merge: NestedDict) -> NestedDict:
    """A new dict: `dct` with `merge` merged in (dicts in both are merged, else `merge` wins)."""
    merged = dict(dct)
    for key, value in merge.items():
        current = merged.get(key)
        both_dicts = isinstance(current, dict) and isinstance(value, dict)
        merged[key] = deep_merge(cast(NestedDict, current), value) if both_dicts else value
    return merged


def deep_merge_dicts(*dicts: NestedDict) -> NestedDict:
    """`deep_merge` of all `dicts`, left to right."""
    merged: NestedDict = {}
    for dct in dicts:
        merged = deep_merge(merged, dct)
    return merged


__all__ = [
    "AutoEnum",
    "BaseAnnotation",
    "Quote",
    "StopVisiting",
    "batched_iterable",
    "deep_merge",
    "deep_merge_dicts",
    "dict_to_flatdict",
    "distinct",
    "ensure_iterable",
    "extract_instances",
    "flatdict_to_dict",
    "get_from_dict",
    "isiterable",
    "listrepr",
    "opaque",
    "quote",
    "remove_nested_keys",
    "set_in_dict",
    "visit_collection",
]
