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

from events.messages import plain

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
    "gateway.sources.settings", "events.background",
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


LOG_LEVEL = click.option(
    "--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    default=None, help="lowest level logged  [default: FLOWBUS_LOG_LEVEL, else INFO]")


def default_log_level() -> str:
    """``FLOWBUS_LOG_LEVEL``, else INFO."""
    from events.logformat import LogSettings

    return LogSettings().level


def configure_service_logging(level: str | None = None) -> None:
    """Log as FLOWBUS_LOG_FORMAT / FLOWBUS_LOG_LEVEL (or ``--log-level``) say (services only)."""
    from events.logformat import LogSettings, configure_logging
    from flowbus.logging import setup_logging

    settings = LogSettings()
    if level is not None:
        settings = settings.model_copy(update={"level": level.upper()})
    configure_logging(settings)
    setup_logging(console=False)


def dev_nats_url() -> str | None:
    """The URL a running ``flowbus dev`` left in ``$FLOWBUS_HOME/dev/nats.url``, if any."""
    import os
    from pathlib import Path

    home = Path(os.environ.get("FLOWBUS_HOME") or str(Path.home() / ".flowbus"))
    try:
        url = (home / "dev" / "nats.url").read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return url if url.startswith("nats://") and len(url) < 1024 else None


def nats_settings(**overrides: Any) -> Any:
    """The process's NATS settings, with an unknown or bad setting reported as an error."""
    from pydantic import ValidationError

    from events.settings import NatsSettings, nats_url_from_env

    check_settings()
    if overrides.get("nats_url") is None and nats_url_from_env() is None:
        found = dev_nats_url()  # the NATS of a `flowbus dev` started with --nats-port 0
        if found is not None:
            overrides["nats_url"] = [found]
    try:
        return NatsSettings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        fail(f"setting FLOWBUS_{str(first['loc'][0]).upper()}: {plain(first)}", 2)
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
