"""Type aliases shared by the orchestrator's modules."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

Clock = Callable[[], datetime]
"""Returns the current time (UTC, aware). Injected so tests move time by hand."""
