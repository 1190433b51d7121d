"""Service logs as text or JSON lines, with run ids carried."""

from __future__ import annotations

import json
import logging

import pytest

from events.logformat import JsonFormatter, LogSettings, configure_logging
from events.settings import check_environment


def test_json_record_carries_run_ids_and_exceptions() -> None:
    logger = logging.getLogger("flowbus.test")
    record = logger.makeRecord("flowbus.test", logging.ERROR, __file__, 1, "run %s failed",
                               ("r1",), None, extra={"flow_run_id": "r1", "deployment": "etl"})
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "run r1 failed" and line["level"] == "ERROR"
    assert line["flow_run_id"] == "r1" and line["deployment"] == "etl"
    assert "ValueError: boom" in line["exception"]


def test_configure_installs_one_handler(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    before = list(root.handlers)
    level = root.level
    try:
        configure_logging(LogSettings(format="json"))
        configure_logging(LogSettings(format="json"))
        ours = [h for h in root.handlers if getattr(h, "_flowbus", False)]
        assert len(ours) == 1
        logging.getLogger("service.x").warning("hello")
        assert json.loads(capsys.readouterr().err.strip().splitlines()[-1])["message"] == "hello"
    finally:
        for h in list(root.handlers):
            if h not in before:
                root.removeHandler(h)
        root.setLevel(level)


def test_log_settings_are_known_and_checked() -> None:
    check_environment({"FLOWBUS_LOG_FORMAT": "json", "FLOWBUS_LOG_LEVEL": "INFO"})
    with pytest.raises(ValueError, match="format"):
        LogSettings(format="xml")  # type: ignore[arg-type]
