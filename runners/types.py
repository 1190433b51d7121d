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
    attempt: int = 1
    code_root: str = "."
    durable_tasks: bool = True  # reuse tasks completed by earlier attempts (flowbus._durable)

    @property
    def result_name(self) -> str:
        """Where this attempt's result goes in the results store (see docs/contract.md)."""
        return result_name(self.flow_run_id, self.attempt)


def result_name(flow_run_id: str, attempt: int) -> str:
    """The flow-run id for a first attempt, ``<id>.<attempt>`` after: a late write of a
    superseded attempt never overwrites the result of a newer one."""
    return flow_run_id if attempt <= 1 else f"{flow_run_id}.{attempt}"


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
    result document if any; ``recorded`` once the executing process stored the
    outcome in the attempts bucket, the result then under ``result_ref``);
    ``died``: the worker process exited;
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
    result_ref: str | None = None
    recorded: bool = False


class Execution(Protocol):
    """One attempt under way; ``loaded`` resolves when the flow is imported, and the
    body only starts on :meth:`go` (after the runner recorded that it starts)."""

    loaded: asyncio.Future[FlowInfo]
    finished: asyncio.Future[Outcome]

    def go(self) -> None:
        """Start the body of the loaded flow."""
        ...

    def renew(self, since: float) -> None:
        """Extend the attempt's lease: the runner heartbeated at ``since`` (monotonic)."""
        ...

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
