"""Wrappers that change how a task or flow input (or a returned value) is treated.

- `allow_failure(x)`: the run starts even if the upstream run behind `x` failed; it
  receives that run's exception as the value. Also accepted in ``wait_for=[...]``.
- `quote(x)`: `x` is passed as is: futures and states inside it are not resolved and
  it is not searched for them (cheap for a big collection). A flow returning
  ``quote(state)`` completes with that state as its data.
- `opaque(x)`: a future or state is resolved, but the value is not searched further.

Example::

    from flowbus.utilities.annotations import allow_failure, quote

    @flow
    def pipeline():
        raw = extract.submit()
        cleanup.submit(wait_for=[allow_failure(raw)])
        summarize(quote(big_frame))
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

T = TypeVar("T")


class BaseAnnotation(tuple[T], Generic[T]):
    """A one-item tuple marking its value; `unwrap()` gives the value back."""

    def __new__(cls, value: T) -> BaseAnnotation[T]:
        return super().__new__(cls, (value,))

    def __getnewargs__(self) -> tuple[T]:  # pickles as the annotation, not a bare tuple
        return (self[0],)

    def unwrap(self) -> T:
        return self[0]

    def rewrap(self, value: T) -> BaseAnnotation[T]:
        return type(self)(value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BaseAnnotation) and type(self) is type(other) and self.unwrap() == other.unwrap()

    def __ne__(self, other: object) -> bool:  # tuple has its own __ne__
        return not self == other

    def __hash__(self) -> int:
        return hash((type(self), self[0]))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self[0]!r})"


class allow_failure(BaseAnnotation[T]):
    """The upstream run behind this input may have failed; its exception is passed on."""


class quote(BaseAnnotation[T]):
    """Pass the value as is, without resolving or searching it."""

    def unquote(self) -> T:
        return self.unwrap()


class opaque(BaseAnnotation[T]):
    """Resolve a future or state, but do not search the value for more."""


def unwrap_annotation(value: Any) -> Any:
    """`value` without an annotation around it."""
    return value.unwrap() if isinstance(value, BaseAnnotation) else value


__all__ = ["BaseAnnotation", "allow_failure", "opaque", "quote", "unwrap_annotation"]
