"""Wrappers that change how a task or flow input (or a returned value) is treated.

- `allow_failure(x)`: the run starts even if the upstream run behind `x` failed; it
  receives that run's exception as the value. Also accepted in ``wait_for=[...]``.
- `quote(x)`: `x` is passed as is: futures and states inside it are not resolved and
  it is not searched for them (cheap for a big collection). A flow returning
  ``quote(state)`` completes with that state as its data.
- `opaque(x)`: a future or state is resolved, but the value is not searched further.
- `unmapped(x)`: `Task.map` passes `x` whole to every run instead of iterating over it.
- `freeze(x)`: Prefect's mark for a deployment parameter its UI may not change;
  `x` must be JSON-serialisable. flowbus deploys `x` as the parameter's value, but
  does not lock it: a flow run of the deployment may still override it.

Example::

    from flowbus.utilities.annotations import allow_failure, quote

    @flow
    def pipeline():
        raw = extract.submit()
        cleanup.submit(wait_for=[allow_failure(raw)])
        summarize(quote(big_frame))
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:  # pydantic loads only when a frozen value is made or validated
    from pydantic import GetCoreSchemaHandler
    from pydantic_core import CoreSchema

T = TypeVar("T")


class BaseAnnotation(tuple[T], Generic[T]):
    """A one-item tuple marking its value; `unwrap()` gives the value back."""

    def __new__(cls, value: T) -> BaseAnnotation[T]:
        return super().__new__(cls, (value,))

    def __getnewargs__(self) -> tuple[T]:  # pickles as the annotation, not a bare tuple
        return (self[0],)

    @property
    def value(self) -> T:
        return self.unwrap()

    def unwrap(self) -> T:
        return tuple.__getitem__(self, 0)

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


class unmapped(BaseAnnotation[T]):
    """Pass an argument whole to every run of `Task.map` instead of iterating over it.

    Indexing it at any position gives the value, as an endless sequence of it would.
    """

    def __getitem__(self, index: Any) -> T:  # type: ignore[override]
        return self.unwrap()


class Quote(quote[T]):
    """The old name of `quote`; deprecated."""

    def __new__(cls, value: T) -> Quote[T]:
        warnings.warn("Use of `Quote` is deprecated. Use `quote` instead.", DeprecationWarning, stacklevel=2)
        return super().__new__(cls, value)  # type: ignore[return-value]


class NotSet:
    """Marks an argument that was not given, where None is a meaningful value."""


class freeze(BaseAnnotation[T]):
    """Prefect's mark for a deployment parameter that may not be changed.

    flowbus deploys the value as the parameter's default but does not lock it yet.

    Example::

        my_flow.deploy("nightly", parameters={"customer_id": freeze("c-123")})

    The value must be JSON-serialisable (`ValueError` otherwise). In a pydantic model
    or `TypeAdapter` it serialises as the value itself.
    """

    def __new__(cls, value: T) -> freeze[T]:
        from pydantic_core import to_json

        try:
            to_json(value)
        except Exception:
            raise ValueError(f"Value must be JSON serializable, got {type(value).__qualname__}") from None
        return super().__new__(cls, value)  # type: ignore[return-value]

    def unfreeze(self) -> T:
        """The value."""
        return self.unwrap()

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        from pydantic_core import core_schema

        return core_schema.no_info_after_validator_function(
            cls,
            core_schema.any_schema(),
            serialization=core_schema.plain_serializer_function_ser_schema(lambda frozen: frozen.unfreeze()),
        )


def unwrap_annotation(value: Any) -> Any:
    """`value` without an annotation around it."""
    return value.unwrap() if isinstance(value, BaseAnnotation) else value


__all__ = [
    "BaseAnnotation",
    "NotSet",
    "Quote",
    "allow_failure",
    "freeze",
    "opaque",
    "quote",
    "unmapped",
    "unwrap_annotation",
]
