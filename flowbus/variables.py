"""Variables: small named JSON values shared by flows.

With no server they live under ``$FLOWBUS_HOME/variables``, one file each, written
atomically. As in Prefect, `get`, `set` and `unset` are called plainly in sync code
and awaited in async code (an async flow or task, or any coroutine)::

    from flowbus.variables import Variable

    Variable.set("threshold", 10, overwrite=True)
    Variable.get("threshold")            # 10
    await Variable.get("threshold")      # 10, in async code
    await Variable.aget("threshold")     # 10
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flowbus._dual import dual_classmethod
from flowbus.results import flowbus_home, write_atomic

_NAME = re.compile(r"^[a-z0-9_-]{1,255}$")


def _path(name: str) -> Path:
    if not _NAME.match(name):
        raise ValueError(
            f"Variable name {name!r} is invalid: use 1-255 lowercase letters, digits, '_' or '-'"
        )
    return flowbus_home() / "variables" / f"{name}.json"


@dataclass(slots=True)
class Variable:
    """A named JSON value."""

    name: str
    value: Any
    tags: list[str]

    @dual_classmethod("aget")
    def get(cls: type[Variable], name: str, default: Any = None) -> Any:
        """The value of variable `name`, or `default` when it is not set."""
        try:
            return json.loads(_path(name).read_text())["value"]
        except FileNotFoundError:
            return default

    @dual_classmethod("aset")
    def set(
        cls: type[Variable], name: str, value: Any, tags: list[str] | None = None, overwrite: bool = False
    ) -> Variable:
        """Set variable `name`; without ``overwrite=True`` an existing one is an error."""
        path = _path(name)
        if path.exists() and not overwrite:
            raise ValueError(f"Variable {name!r} already exists; pass overwrite=True to replace it")
        try:
            data = json.dumps({"name": name, "value": value, "tags": tags or []})
        except TypeError as exc:
            raise TypeError(f"Variable {name!r}: value must be JSON-serializable ({exc})") from None
        write_atomic(path, data.encode())
        return cls(name, value, list(tags or []))

    @dual_classmethod("aunset")
    def unset(cls: type[Variable], name: str) -> bool:
        """Delete variable `name`; True if it existed."""
        try:
            _path(name).unlink()
            return True
        except FileNotFoundError:
            return False

    @classmethod
    async def aget(cls, name: str, default: Any = None) -> Any:
        return await asyncio.to_thread(cls.get, name, default, _sync=True)

    @classmethod
    async def aset(cls, name: str, value: Any, tags: list[str] | None = None, overwrite: bool = False) -> Variable:
        return await asyncio.to_thread(cls.set, name, value, tags, overwrite, _sync=True)

    @classmethod
    async def aunset(cls, name: str) -> bool:
        return await asyncio.to_thread(cls.unset, name, _sync=True)


__all__ = ["Variable"]
