"""Run loggers: log lines that carry their run's ids and go to the run's log stream.

Example::

    from flowbus import flow
    from flowbus.logging import get_run_logger

    @flow
    def hello():
        get_run_logger().info("hi")   # printed, and handed to the event sink
"""

from __future__ import annotations

import builtins
import contextlib
import contextvars
import logging
import os
import sys
import threading
from collections.abc import Iterator, MutableMapping
from typing import Any

from events.logrecords import run_log_record
from flowbus import _sink
from flowbus.context import _flow_run_ctx, _task_run_ctx
from flowbus.exceptions import MissingContextError

FLOW_RUN_LOGGER = "flowbus.flow_runs"
TASK_RUN_LOGGER = "flowbus.task_runs"

_disabled: contextvars.ContextVar[bool] = contextvars.ContextVar("flowbus_logger_off", default=False)
_log_prints: contextvars.ContextVar[bool] = contextvars.ContextVar("flowbus_log_prints", default=False)


class RunLoggerAdapter(logging.LoggerAdapter):  # type: ignore[type-arg]
    """A logger bound to one run: its records carry the run ids and a display label."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        extra = kwargs.get("extra")
        kwargs["extra"] = {**self.extra, **extra} if extra else self.extra  # type: ignore[dict-item]
        return msg, kwargs


_traceback_formatter = logging.Formatter()


class _SinkHandler(logging.Handler):
    """Hands run log records to the event sink (only those that carry a run id)."""

    def emit(self, record: logging.LogRecord) -> None:
        if not _sink.enabled:
            return
        flow_run_id = getattr(record, "flow_run_id", None)
        task_run_id = getattr(record, "task_run_id", None)
        if flow_run_id is None and task_run_id is None:
            return
        message = record.getMessage()
        if record.exc_info:
            # The traceback travels with the line, as it would appear on a console.
            message = f"{message}\n{_traceback_formatter.formatException(record.exc_info)}"
        _sink.emit_log_record(run_log_record(
            flow_run_id=flow_run_id, task_run_id=task_run_id, name=record.name,
            level=record.levelno, message=message, timestamp=record.created,
        ))


class _Formatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s.%(msecs)03d | %(levelname)-7s | %(run_label)s - %(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        if not hasattr(record, "run_label"):
            record.run_label = record.name
        return super().format(record)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is now (test runners and notebooks swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


_setup_lock = threading.Lock()
_is_setup = False


def setup_logging(*, console: bool = True) -> None:
    """Attach flowbus's console and sink handlers once (at the first run, not at import).

    The console level comes from ``FLOWBUS_LOGGING_LEVEL`` (default INFO). A service
    (gateway, orchestrator, runner) calls it with ``console=False`` after setting up
    its own logging: run logs then still reach the event sink, and print through
    the service's handlers (e.g. as JSON) instead of the SDK's console.
    """
    global _is_setup
    if _is_setup:
        return
    with _setup_lock:
        if _is_setup:
            return
        root = logging.getLogger("flowbus")
        root.setLevel(os.environ.get("FLOWBUS_LOGGING_LEVEL", "INFO").upper())
        if console:
            handler = _StderrHandler()
            handler.setFormatter(_Formatter())
            root.addHandler(handler)
            # Run logs are flowbus's own output: do not print them twice through the root.
            root.propagate = False
        root.addHandler(_SinkHandler())
        _is_setup = True


_flow_logger = logging.getLogger(FLOW_RUN_LOGGER)
_task_logger = logging.getLogger(TASK_RUN_LOGGER)
_null_logger = logging.getLogger("flowbus.null")
_null_logger.disabled = True


def get_run_logger() -> logging.LoggerAdapter:  # type: ignore[type-arg]
    """A logger for the current flow or task run.

    Raises `MissingContextError` outside a run (unless `disable_run_logger` is active).
    """
    if _disabled.get():
        return logging.LoggerAdapter(_null_logger, {})
    task_ctx = _task_run_ctx.get()
    if task_ctx is not None:
        return task_run_logger(task_ctx.task_run)
    flow_ctx = _flow_run_ctx.get()
    if flow_ctx is not None:
        return flow_run_logger(flow_ctx.flow_run)
    raise MissingContextError(
        "There is no active flow or task run: get_run_logger() only works inside a "
        "@flow or @task. In unit tests of a task's `.fn`, wrap the call in "
        "`with disable_run_logger():`."
    )


def flow_run_logger(flow_run: Any) -> RunLoggerAdapter:
    return RunLoggerAdapter(
        _flow_logger,
        {
            "flow_run_id": flow_run.id,
            "task_run_id": None,
            "run_label": f"Flow run {flow_run.name!r}",
        },
    )


def task_run_logger(task_run: Any) -> RunLoggerAdapter:
    return RunLoggerAdapter(
        _task_logger,
        {
            "flow_run_id": task_run.flow_run_id,
            "task_run_id": task_run.id,
            "run_label": f"Task run {task_run.name!r}",
        },
    )


def get_logger(name: str | None = None) -> logging.Logger:
    """A flowbus logger outside runs (``flowbus`` or ``flowbus.<name>``), as Prefect's."""
    setup_logging()
    return logging.getLogger(f"flowbus.{name}" if name else "flowbus")


@contextlib.contextmanager
def disable_run_logger() -> Iterator[None]:
    """Make `get_run_logger` return a silent logger, even outside a run (for tests)."""
    token = _disabled.set(True)
    try:
        yield
    finally:
        _disabled.reset(token)


_original_print = builtins.print
_print_patched = False


def _print(*args: Any, sep: str | None = " ", end: str | None = "\n", file: Any = None, flush: bool = False) -> None:
    if _log_prints.get() and file in (None, sys.stdout, sys.stderr) and not _disabled.get():
        try:
            logger = get_run_logger()
        except MissingContextError:
            pass
        else:
            logger.info((sep if sep is not None else " ").join(str(a) for a in args))
            return
    _original_print(*args, sep=sep, end=end, file=file, flush=flush)


def enable_log_prints() -> None:
    """Route `print` to the run logger in runs with ``log_prints=True``.

    `builtins.print` is replaced once, the first time such a run starts; the
    replacement only diverts calls made inside a run that asked for it.
    """
    global _print_patched
    if not _print_patched:
        builtins.print = _print
        _print_patched = True


__all__ = ["disable_run_logger", "get_logger", "get_run_logger"]
