"""What every command shares: settings, running coroutines, errors, durations."""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import Callable, Coroutine
from datetime import timedelta
from functools import wraps
from typing import Any, ParamSpec, TypeVar

import click

P = ParamSpec("P")
T = TypeVar("T")

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    """'90s', '10m', '1h30m', '2d' -> timedelta; click.BadParameter naming the text."""
    text = text.strip().lower()
    pos, seconds = 0, 0.0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            break
        seconds += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise click.BadParameter(f"{text!r} is not a duration; use e.g. 30s, 10m, 1h30m, 2d")
    return timedelta(seconds=seconds)


def fail(message: str, code: int = 1) -> None:
    """Print ``message`` as an error and exit with ``code``."""
    click.secho(f"Error: {message}", fg="red", err=True)
    sys.exit(code)


# Every settings module of every part: importing one registers its FLOWBUS_* names, so
# the environment check knows all of them whichever command runs.
SETTINGS_MODULES = (
    "events.settings", "events.logformat", "flowbus.project", "gateway.settings",
    "orchestrator.settings", "orchestrator.automations.settings", "runners.settings",
    "gateway.sources.settings",
)


def check_settings() -> None:
    """Refuse unknown FLOWBUS_* variables (exit 2 naming them)."""
    import importlib

    from events.errors import SettingsError
    from events.settings import check_environment

    for module in SETTINGS_MODULES:
        importlib.import_module(module)
    try:
        check_environment()
    except SettingsError as exc:
        fail(str(exc), 2)


def configure_service_logging() -> None:
    """Log as FLOWBUS_LOG_FORMAT / FLOWBUS_LOG_LEVEL say (services only)."""
    from events.logformat import configure_logging
    from flowbus.logging import setup_logging

    configure_logging()
    setup_logging(console=False)


def nats_settings(**overrides: Any) -> Any:
    """The process's NATS settings, with an unknown or bad setting reported as an error."""
    from pydantic import ValidationError

    from events.settings import NatsSettings

    check_settings()
    try:
        return NatsSettings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        fail(f"setting FLOWBUS_{str(first['loc'][0]).upper()}: {first['msg']}", 2)
    raise AssertionError("unreachable")


def run_async(fn: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, T | None]:
    """Run an async command; a FlowbusError becomes a one-line error and exit 1."""

    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T | None:
        from events.errors import FlowbusError

        try:
            return asyncio.run(fn(*args, **kwargs))
        except FlowbusError as exc:
            fail(str(exc))
        except KeyboardInterrupt:
            return None
        return None

    return wrapper


def print_table(columns: list[str], rows: list[list[str]], *, empty: str = "nothing yet") -> None:
    """One rich table, the same for every ``ls`` (a line saying so when there are no rows)."""
    from rich.console import Console
    from rich.table import Table

    if not rows:
        click.echo(f"({empty})")
        return
    table = Table(*columns)
    for row in rows:
        table.add_row(*row)
    Console(width=200).print(table)
