from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flowbus import _sink


@pytest.fixture(autouse=True)
def flowbus_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own FLOWBUS_HOME, so nothing touches the real home."""
    home = tmp_path / "flowbus-home"
    monkeypatch.setenv("FLOWBUS_HOME", str(home))
    monkeypatch.delenv("FLOWBUS_EVENTS_FILE", raising=False)
    return home


class CollectingSink:
    """Keeps what the engine emits, for assertions (thread-safe like a real sink)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.logs: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def emit_event(self, event: dict[str, Any]) -> None:
        with self._lock:
            self.events.append(event)

    def emit_log(self, record: dict[str, Any]) -> None:
        with self._lock:
            self.logs.append(record)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def state_names(self, kind: str, run_id: str | None = None) -> list[str]:
        prefix = f"flowbus.{kind}."
        return [
            e["type"][len(prefix):]
            for e in self.events
            if e["type"].startswith(prefix) and (run_id is None or e["data"]["id"] == run_id)
        ]

    def runs(self, kind: str) -> dict[str, list[str]]:
        """Run id -> state names, in order, for one kind (flow-run, task-run)."""
        out: dict[str, list[str]] = {}
        for e in self.events:
            if e["type"].startswith(f"flowbus.{kind}."):
                out.setdefault(e["data"]["id"], []).append(e["data"]["state"]["name"])
        return out


@pytest.fixture
def sink() -> Iterator[CollectingSink]:
    collecting = CollectingSink()
    previous = _sink.set_event_sink(collecting)
    try:
        yield collecting
    finally:
        _sink.set_event_sink(previous)
