"""Variables: small named JSON values shared by flows.

With a server (a run on a runner, or ``FLOWBUS_NATS_URL`` set) they live in the
``flowbus-variables`` KV bucket that ``/api/v1/variables`` reads and writes, so a
variable set through the API is what a flow on any runner reads. With no server
they live under ``$FLOWBUS_HOME/variables``, one file each, written atomically.
As in Prefect, `get`, `set` and `unset` are called plainly in sync code and awaited in
async code (an async flow or task, or any coroutine)::

    from flowbus.variables import Variable

    Variable.set("threshold", 10, overwrite=True)
    Variable.get("threshold")            # 10
    await Variable.get("threshold")      # 10, in async code
    await Variable.aget("threshold")     # 10
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import json
import re
from dataclasses import dataclass
from typing import Any

from flowbus import _state
from flowbus._dual import dual_classmethod

_NAME = re.compile(r"^[a-z0-9_-]{1,255}$")
MAX_VALUE_BYTES = 64 * 1024


def _check(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"Variable name {name!r} is invalid: use 1-255 lowercase letters, digits, '_' or '-'"
        )
    return name


@dataclass(slots=True)
class Variable:
    """A named JSON value."""

    name: str
    value: Any
    tags: list[str]

    @dual_classmethod("aget")
    def get(cls: type[Variable], name: str, default: Any = None) -> Any:
        """The value of variable `name`, or `default` when it is not set."""
        raw = _state.bucket("variables").get(_check(name))
        return default if raw is None else json.loads(raw)["value"]

    @dual_classmethod("aset")
    def set(
        cls: type[Variable], name: str, value: Any, tags: list[str] | None = None, overwrite: bool = False
    ) -> Variable:
        """Set variable `name`; without ``overwrite=True`` an existing one is an error."""
        from events.variables import VariableRecord

        bucket = _state.bucket("variables")
        now = _dt.datetime.now(_dt.UTC)
        existing = bucket.get(_check(name))
        # Files written before variables carried timestamps have no "created": now is the best we know.
        previous = json.loads(existing).get("created") if existing is not None else None
        created = _dt.datetime.fromisoformat(previous) if previous else now
        try:
            json.dumps(value)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"Variable {name!r}: value must be JSON-serializable ({exc})") from None
        record = VariableRecord(name=name, value=value, tags=list(tags or []), created=created, updated=now)
        data = record.model_dump_json().encode()
        if len(data) > MAX_VALUE_BYTES:
            raise ValueError(f"Variable {name!r} is {len(data)} bytes encoded, over {MAX_VALUE_BYTES}")
        if existing is not None and not overwrite:
            raise ValueError(f"Variable {name!r} already exists; pass overwrite=True to replace it")
        if overwrite:
            bucket.put(name, data)
        elif not bucket.create(name, data):
            raise ValueError(f"Variable {name!r} already exists; pass overwrite=True to replace it")
        return cls(name, value, list(tags or []))

    @dual_classmethod("aunset")
    def unset(cls: type[Variable], name: str) -> bool:
        """Delete variable `name`; True if it existed."""
        return _state.bucket("variables").delete(_check(name))

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
