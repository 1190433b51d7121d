"""What travels between the runner and the code that executes a run (worker or inline)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

OutcomeKind = Literal["final", "died", "timeout", "stopped"]


@dataclass(frozen=True, slots=True)
class RunSpec:
    """One attempt to execute: what to load and how to call it (picklable)."""

    flow_run_id: str
    flow_run_name: str
    module: str
    attribute: str
    parameters: dict[str, Any]
    deployment_id: str | None = None
    deployment_name: str | None = None
    tags: tuple[str, ...] = ()
    result_max_bytes: int = 8 * 1024 * 1024
    code_root: str = "."


@dataclass(frozen=True, slots=True)
class FlowInfo:
    """The loaded flow's policy, reported before its body starts."""

    name: str
    retries: int
    timeout_seconds: float | None
    has_cancellation_hooks: bool


@dataclass(frozen=True, slots=True)
class Outcome:
    """How an attempt ended.

    ``final``: the engine reached a final state (``state_name``, ``message``, the
    persisted result document if any); ``died``: the worker process exited;
    ``timeout``: the runner stopped it at its deadline; ``stopped``: the runner stopped
    it (cancellation, drain, lost claim).
    """

    kind: OutcomeKind
    state_name: str = "Crashed"
    message: str | None = None
    result: bytes | None = None
    recycle: bool = False
    logs_shipped: int = 0
    logs_dropped: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class Execution(Protocol):
    """One attempt under way; ``loaded`` resolves before the body starts."""

    loaded: asyncio.Future[FlowInfo]
    finished: asyncio.Future[Outcome]

    async def stop(self) -> None:
        """Stop the attempt now (the finished future then holds a ``stopped`` outcome)."""
        ...


class Executor(Protocol):
    """Runs attempts: warm worker processes or the runner's own process."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def execute(self, spec: RunSpec) -> Execution: ...

    async def run_cancellation_hooks(self, spec: RunSpec, message: str) -> None: ...

    def restarts(self) -> int: ...
