"""A run's log record: the one shape every producer puts on the logs stream.

Producers: the SDK's run loggers (``flowbus.logging``), a runner's captured standard
output and error (``runners/sinks.py``), and the runner's own lines about a run
(``runners/attempt.py``, ``runners/records.py``). Reader: :mod:`events.run_logs`, for
the API, the UI and the command line.

The level is a number, as in Python's ``logging`` and Prefect's API (20 is INFO).
Records stored by older versions may hold a level's name; :func:`level_number` reads
both, so readers hand out numbers only.

>>> record = run_log_record(flow_run_id="r1", name="flowbus.runner", level=20,
...                         message="hi", timestamp=0.0)
>>> record["level"], record["timestamp"]
(20, '1970-01-01T00:00:00+00:00')
>>> level_number("WARNING"), level_number(" nonsense "), level_name(40)
(30, 0, 'ERROR')
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TypedDict

RUNNER_LOGGER = "flowbus.runner"
"""The logger name of the lines a runner writes about a run (claimed, crashed...)."""


class RunLogRecord(TypedDict):
    flow_run_id: str | None
    task_run_id: str | None
    name: str
    level: int
    message: str
    timestamp: str


def run_log_record(*, flow_run_id: str | None, name: str, level: int, message: str,
                   task_run_id: str | None = None,
                   timestamp: float | datetime | None = None) -> RunLogRecord:
    """A record; ``timestamp`` is a POSIX time or an aware datetime (default: now)."""
    if timestamp is None:
        when = datetime.now(UTC)
    elif isinstance(timestamp, datetime):
        when = timestamp
    else:
        when = datetime.fromtimestamp(timestamp, UTC)
    return {"flow_run_id": flow_run_id, "task_run_id": task_run_id, "name": name,
            "level": level, "message": message, "timestamp": when.isoformat()}


def level_number(value: object) -> int:
    """A stored level as a number: numbers as they are, known names by value, else 0."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        number = logging.getLevelNamesMapping().get(value.strip().upper())
        return number if number is not None else 0
    return 0


def level_name(value: object) -> str:
    """A level's name (``INFO``); a number no level has stays a number (``"25"``)."""
    if isinstance(value, str) and value.strip().upper() not in logging.getLevelNamesMapping():
        return value
    number = level_number(value)
    name = logging.getLevelName(number)
    return name if not name.startswith("Level ") else str(number)
