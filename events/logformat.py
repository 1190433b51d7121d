"""How the services log: readable text for people, JSON lines for log pipelines.

``FLOWBUS_LOG_FORMAT=json`` makes every record one JSON object with time, level,
logger, message, and any run ids passed in ``extra`` (``flow_run_id``,
``task_run_id``, ``deployment``, ``event_id``), so logs can be joined with runs.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from events.settings import register

# Attributes worth carrying into JSON when a caller passes them in ``extra``.
CONTEXT_FIELDS = ("flow_run_id", "task_run_id", "deployment", "event_id", "work_pool", "runner_id")


@register
class LogSettings(BaseSettings):
    """Log format and level of a flowbus service."""

    model_config = SettingsConfigDict(env_prefix="FLOWBUS_LOG_", extra="forbid", frozen=True)

    format: Literal["text", "json"] = Field(default="text", description="text or json lines")
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="lowest level logged"
    )


class JsonFormatter(logging.Formatter):
    """One JSON object per record."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                out[name] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure_logging(settings: LogSettings | None = None) -> None:
    """Install one stderr handler on the root logger in the chosen format."""
    settings = settings or LogSettings()
    handler = logging.StreamHandler(sys.stderr)
    if settings.format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_flowbus", False):
            root.removeHandler(old)
    handler._flowbus = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(settings.level)
