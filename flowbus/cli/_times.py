"""Start and duration of a flow run, as the ``flow-run ls`` table shows them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

WAITING = frozenset({"Scheduled", "AwaitingRetry", "AwaitingConcurrencySlot", "Late", "Resuming"})


def human_duration(delta: timedelta) -> str:
    """``0.42s``, ``12.3s``, ``4m05s``, ``2h03m``, ``3d04h``."""
    seconds = max(delta.total_seconds(), 0.0)
    if seconds < 60:
        return f"{seconds:.2f}s" if seconds < 10 else f"{seconds:.1f}s"
    minutes, sec = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def run_start(run: Any, now: datetime | None = None) -> str:
    """When it started; for a run that has not, when it is due ("in 5m00s" / "due 3.0s ago")."""
    if run.start_time is not None:
        return _when(run.start_time)
    if run.state.name in WAITING:
        now = now or datetime.now(UTC)
        ahead = run.expected_start_time - now
        if ahead.total_seconds() > 0:
            return f"in {human_duration(ahead)}"
        return f"due {human_duration(-ahead)} ago"
    return "-"


def run_duration(run: Any, now: datetime | None = None) -> str:
    """Start to end (or to now, while it runs); ``-`` before it started."""
    if run.start_time is None:
        return "-"
    end = run.end_time or (None if run.state.is_final() else now or datetime.now(UTC))
    if end is None:
        return "-"
    return human_duration(end - run.start_time) + ("" if run.end_time else " so far")
