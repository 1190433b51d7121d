"""Logging handlers, for use in a logging configuration (Prefect's
``prefect.logging.handlers``).

- :class:`FlowbusConsoleHandler` (also ``PrefectConsoleHandler``): the console lines
  of run loggers (``12:00:00.123 | INFO    | Task run 'fetch-3fa' - ...``), written to
  the current ``sys.stderr``.
- :class:`APILogHandler`: hands records that carry a run id to the event sink, so they
  reach the run's log stream (``flowbus logs``, the API).

Example::

    import logging
    from flowbus.logging.handlers import FlowbusConsoleHandler

    logging.getLogger("my_app").addHandler(FlowbusConsoleHandler(level="INFO"))

Prefect's console handler colours its lines with ``rich``; flowbus's accepts the
``highlighter`` and ``styles`` arguments and writes plain lines.
"""

from __future__ import annotations

import logging
from typing import Any

from flowbus.logging import _Formatter, _SinkHandler, _StderrHandler


class FlowbusConsoleHandler(_StderrHandler):
    """flowbus's console lines on the current ``sys.stderr``."""

    def __init__(self, highlighter: Any = None, styles: dict[str, str] | None = None,
                 level: int | str = logging.NOTSET) -> None:  # fmt: skip
        super().__init__()
        self.highlighter = highlighter
        self.styles = styles
        self.setLevel(level)
        self.setFormatter(_Formatter())


class APILogHandler(_SinkHandler):
    """Records of flow and task runs to the event sink; other records are dropped."""


PrefectConsoleHandler = FlowbusConsoleHandler

__all__ = ["APILogHandler", "FlowbusConsoleHandler", "PrefectConsoleHandler"]
