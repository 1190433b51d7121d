"""Flow-run states and the rules for moving between them, as pure functions.

A state has a *type* (what the system reasons about) and a *name* (what users see),
exactly as in Prefect 3: ``Late``, ``AwaitingRetry`` and ``Resuming`` are SCHEDULED, ``Retrying``
is RUNNING, ``Cached`` is COMPLETED. :func:`check_transition` accepts or rejects a
proposed move with a reason; the orchestrator and runners call it before every
compare-and-set of a flow-run record, so the rules live in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class StateType(StrEnum):
    SCHEDULED = "SCHEDULED"
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    CRASHED = "CRASHED"
    PAUSED = "PAUSED"
    CANCELLING = "CANCELLING"


STATE_TYPES: dict[str, StateType] = {
    "Scheduled": StateType.SCHEDULED,
    "Late": StateType.SCHEDULED,
    "AwaitingRetry": StateType.SCHEDULED,
    "AwaitingConcurrencySlot": StateType.SCHEDULED,
    "Resuming": StateType.SCHEDULED,
    "Pending": StateType.PENDING,
    "Running": StateType.RUNNING,
    "Retrying": StateType.RUNNING,
    "Completed": StateType.COMPLETED,
    "Cached": StateType.COMPLETED,
    "Failed": StateType.FAILED,
    "Crashed": StateType.CRASHED,
    "Cancelling": StateType.CANCELLING,
    "Cancelled": StateType.CANCELLED,
    "Paused": StateType.PAUSED,
    "Suspended": StateType.PAUSED,
}

FINAL_TYPES = frozenset({StateType.COMPLETED, StateType.FAILED, StateType.CANCELLED, StateType.CRASHED})
# The flow-run lifecycle the orchestrator and runners drive; Cached is a name the SDK
# uses for task runs and never reaches a record. Paused keeps the run's runner (the
# body waits in place); Suspended releases it (events/pauses.py).
FLOW_RUN_STATES = (
    "Scheduled", "Late", "AwaitingRetry", "AwaitingConcurrencySlot", "Pending", "Running",
    "Retrying", "Completed", "Failed", "Crashed", "Cancelling", "Cancelled", "Paused",
    "Suspended", "Resuming",
)

_ACTIVE = ("Pending", "Running", "Retrying")
_WAITING = ("Scheduled", "Late", "AwaitingRetry", "AwaitingConcurrencySlot")

# Where each state may go. Every non-final state may also become Crashed (the
# infrastructure died) and Cancelled/Cancelling (a user asked); those are added below.
_ALLOWED: dict[str | None, frozenset[str]] = {
    None: frozenset({"Scheduled", "Pending", "AwaitingConcurrencySlot", "Paused"}),
    "Scheduled": frozenset({"Scheduled", "Late", "Pending", "AwaitingConcurrencySlot", "Paused", "Failed"}),
    "Late": frozenset({"Scheduled", "Pending", "AwaitingConcurrencySlot", "Paused", "Failed"}),
    "AwaitingRetry": frozenset({"Scheduled", "Late", "Pending", "AwaitingConcurrencySlot", "Failed"}),
    "AwaitingConcurrencySlot": frozenset({"Scheduled", "Late", "Pending", "Failed"}),
    # Pending -> Scheduled: a draining runner hands the run back before it started.
    "Pending": frozenset({"Running", "Retrying", "Scheduled", "Failed"}),
    "Running": frozenset({"Completed", "Failed", "AwaitingRetry", "Paused", "Suspended"}),
    "Retrying": frozenset({"Completed", "Failed", "AwaitingRetry", "Paused", "Suspended"}),
    # Paused -> Suspended: a draining runner hands a paused run over (events/pauses.py).
    "Paused": frozenset({"Running", "Scheduled", "Pending", "Failed", "Suspended"}),
    # Resumed, a suspended run waits for a runner again as Resuming (Prefect's name, a
    # SCHEDULED state): a new attempt, the body restarted.
    "Suspended": frozenset({"Resuming", "Failed"}),
    "Resuming": frozenset({"Scheduled", "Pending", "AwaitingConcurrencySlot", "Failed"}),
    # A run may still finish on its own before the cancellation reaches it.
    "Cancelling": frozenset({"Cancelled", "Completed", "Failed"}),
    # Final states only leave for a new attempt (retry-flow-run, manual retry).
    "Completed": frozenset(),
    "Failed": frozenset({"AwaitingRetry", "Scheduled"}),
    "Crashed": frozenset({"AwaitingRetry", "Scheduled"}),
    "Cancelled": frozenset({"AwaitingRetry", "Scheduled"}),
}
for _name in FLOW_RUN_STATES:
    if STATE_TYPES[_name] not in FINAL_TYPES:
        extra = {"Crashed", "Cancelled"}
        if _name != "Cancelling":
            extra.add("Cancelling")
        _ALLOWED[_name] = _ALLOWED[_name] | extra


@dataclass(frozen=True, slots=True)
class Verdict:
    """The answer to a proposed transition."""

    accepted: bool
    reason: str

    def __bool__(self) -> bool:
        return self.accepted


def state_type(name: str) -> StateType:
    """The type of a state name; ``ValueError`` naming the valid ones for an unknown name."""
    try:
        return STATE_TYPES[name]
    except KeyError:
        raise ValueError(
            f"unknown state name {name!r}; known: {', '.join(STATE_TYPES)}"
        ) from None


def is_final(name: str) -> bool:
    return state_type(name) in FINAL_TYPES


def check_transition(current: str | None, proposed: str) -> Verdict:
    """Whether a flow run in state ``current`` (None: no record yet) may move to ``proposed``.

    >>> check_transition("Running", "Completed").accepted
    True
    >>> check_transition("Completed", "Running").reason
    'the run is Completed, a final state; it cannot become Running'
    """
    if proposed not in _ALLOWED:
        return Verdict(False, f"{proposed!r} is not a flow-run state")
    if current is not None and current not in _ALLOWED:
        return Verdict(False, f"{current!r} is not a flow-run state")
    if proposed in _ALLOWED[current]:
        return Verdict(True, "accepted")
    if current is None:
        return Verdict(False, f"a new run cannot start as {proposed}; start it Scheduled or Pending")
    if current == proposed:
        return Verdict(False, f"the run is already {current}")
    if is_final(current):
        if _ALLOWED[current]:
            return Verdict(
                False,
                f"the run is {current}, a final state; it can only be retried "
                f"(AwaitingRetry or Scheduled), not become {proposed}",
            )
        return Verdict(False, f"the run is {current}, a final state; it cannot become {proposed}")
    return Verdict(False, f"a run cannot go from {current} to {proposed}")


def allowed_from(current: str | None) -> frozenset[str]:
    """Every state a run in ``current`` may move to."""
    return _ALLOWED[current]
