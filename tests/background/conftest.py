"""The test process calls Task.delay against the test's namespace, as a web handler would."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flowbus import _remote
from tests.background.helpers import write_tasks


@pytest.fixture
def tasks_root(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "code"
    root.mkdir()
    write_tasks(root)
    sys.path.insert(0, str(root))
    sys.modules.pop("bg_tasks", None)
    try:
        yield root
    finally:
        sys.path.remove(str(root))
        sys.modules.pop("bg_tasks", None)


@pytest.fixture
def caller(flowbus_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This process connected to the test's namespace (FLOWBUS_NATS_URL set)."""
    for key in ("FLOWBUS_NATS_URL", "FLOWBUS_NAMESPACE", "FLOWBUS_HOME"):
        monkeypatch.setenv(key, flowbus_env[key])
    _remote.reset()
    try:
        yield
    finally:
        _remote.reset()


@pytest.fixture
def worker_env(flowbus_env: dict[str, str], tmp_path: Path) -> dict[str, Any]:
    marks = tmp_path / "marks"
    marks.mkdir()
    return {**flowbus_env, "MARKS_DIR": str(marks), "FLOWBUS_TASK_WORKER_LEASE_SECONDS": "2"}
