"""The exceptions flowbus raises.

Every error derives from `FlowbusError`. Control signals that user code must not
swallow with a bare ``except Exception`` derive from `BaseException` instead
(`FlowbusSignal`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any, Self

# One root for the whole project: the backbone's errors and the SDK's share it.
from events.errors import FlowbusError as FlowbusError


class MissingContextError(FlowbusError, RuntimeError):
    """A run-scoped API was used outside a flow or task run."""


class ParameterBindError(FlowbusError, TypeError):
    """The call's arguments do not fit the function's signature."""

    @classmethod
    def from_bind_failure(
        cls, fn: Callable[..., Any], exc: TypeError, call_args: tuple[Any, ...], call_kwargs: dict[str, Any]
    ) -> Self:
        """The error for `fn` called with `call_args` / `call_kwargs`, which failed with `exc`."""
        name = getattr(fn, "__name__", repr(fn))
        shape = str(inspect.signature(fn)).strip("()")
        return cls(
            f"Error binding parameters for function '{name}': {exc}.\n"
            f"Function '{name}' has signature '{shape}' but received args: {call_args} "
            f"and kwargs: {list(call_kwargs)}."
        )


class ParameterTypeError(FlowbusError, TypeError):
    """A parameter failed validation against the function's type hints."""

    @classmethod
    def from_validation_error(cls, exc: Any) -> Self:
        """The error listing each invalid parameter of a pydantic `ValidationError`, one a line."""
        lines = [f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}" for error in exc.errors()]
        return cls("Flow run received invalid parameters:\n - " + "\n - ".join(lines))


class SignatureMismatchError(FlowbusError, TypeError):
    """The parameters given to a function are not the ones its signature names."""

    @classmethod
    def from_bad_params(cls, expected_params: Sequence[str], provided_params: Sequence[str]) -> Self:
        """The error naming both lists, e.g. ``from_bad_params(["a"], ["b"])``."""
        return cls(
            f"Function expects parameters {list(expected_params)} but was provided with "
            f"parameters {list(provided_params)}"
        )


class SerializationError(FlowbusError, TypeError):
    """A result could not be serialized (or deserialized) by its serializer."""


class UpstreamTaskError(FlowbusError):
    """A task could not start because a task it waited for did not complete."""


class FailedRun(FlowbusError):
    """A run failed without an exception of its own (e.g. it returned `Failed()`)."""


class UnfinishedRun(FlowbusError):
    """The result of a run was asked for before the run reached a final state."""


class CrashedRun(FlowbusError):
    """The run was interrupted by something outside its code (e.g. KeyboardInterrupt)."""


class CancelledRun(FlowbusError):
    """The run was cancelled."""


class MissingResult(FlowbusError):
    """A state has no result to give back (e.g. it was not kept in memory or persisted)."""


class InvalidNameError(FlowbusError, ValueError):
    """A name holds a character flowbus (like Prefect) does not allow there."""


class ReservedArgumentError(FlowbusError, TypeError):
    """A flow's or task's function has a parameter named like a call option."""


class ConfigurationError(FlowbusError, ValueError):
    """An option or setting has a value flowbus cannot use."""


class FlowbusTimeoutError(FlowbusError, TimeoutError):
    """A run exceeded its `timeout_seconds`."""


class TaskRunTimeoutError(FlowbusTimeoutError):
    """A task run exceeded its `timeout_seconds`."""


class FlowRunTimeoutError(FlowbusTimeoutError):
    """A flow run exceeded its `timeout_seconds`."""


class FlowbusSignal(BaseException):
    """Root of control signals; a `BaseException` so `except Exception` lets them pass."""


class Abort(FlowbusSignal):
    """Stop the current run without changing its state further."""


class RunInterrupted(FlowbusSignal):
    """Raised inside a sync body that outlived its timeout, to unwind it.

    It is injected asynchronously into the worker thread running the body, so it can
    surface at any bytecode boundary of user code.
    """


class Pause(FlowbusSignal):
    """Raised by `suspend_flow_run` to end the current attempt; the run is Suspended."""

    def __init__(self, message: str = "The flow run was suspended.", state: Any = None) -> None:
        super().__init__(message)
        self.state = state


class ExternalSignal(FlowbusSignal):
    """Root of signals from outside the process (Prefect's name); never caught by user code."""


class TerminationSignal(ExternalSignal):
    """The process received a termination signal (``signal``: its number, e.g. SIGTERM)."""

    def __init__(self, signal: int) -> None:
        super().__init__(signal)
        self.signal = signal


class FlowPauseTimeout(FlowbusError, TimeoutError):
    """A paused flow run was not resumed within its timeout."""


class NotPausedError(FlowbusError):
    """`resume_flow_run` on a run that is not Paused or Suspended."""
