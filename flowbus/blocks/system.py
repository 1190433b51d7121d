"""Built-in blocks (Prefect's ``prefect.blocks.system``): ``Secret``, ``String``, ``JSON``,
``DateTime``.

::

    from flowbus.blocks.system import Secret

    Secret(value="sk-live-...").save("stripe-key", overwrite=True)
    Secret.load("stripe-key").get()       # "sk-live-..."
"""

from __future__ import annotations

import datetime as _dt
from typing import Any, ClassVar

from pydantic import Field, SecretStr, field_validator

from flowbus.blocks.core import Block


class Secret(Block):
    """A secret value (a string, or any JSON value), encrypted at rest."""

    _secret_fields: ClassVar[tuple[str, ...]] = ("value",)

    value: SecretStr | Any = Field(description="the secret value")

    @field_validator("value", mode="before")
    @classmethod
    def _wrap_strings(cls, value: Any) -> Any:
        return SecretStr(value) if isinstance(value, str) else value

    def get(self) -> Any:
        """The value in clear."""
        return self.value.get_secret_value() if isinstance(self.value, SecretStr) else self.value

    def __repr__(self) -> str:
        return "Secret(value='**********')"

    __str__ = __repr__


class String(Block):
    """A string value."""

    value: str = Field(description="the string")


class JSON(Block):
    """Any JSON value."""

    value: Any = Field(description="any JSON value")


class DateTime(Block):
    """A date and time."""

    value: _dt.datetime = Field(description="an ISO 8601 date and time")


__all__ = ["JSON", "DateTime", "Secret", "String"]
