"""Fixtures of the runner tests."""

from __future__ import annotations

import textwrap
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture
def flow_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], str]:
    """Write flow source to a file in the runners' code root; returns its entrypoint path.

    The code root is ``tmp_path`` (set for the runner settings the test builds), and
    the path is relative to it, as every entrypoint is.
    """
    monkeypatch.setenv("FLOWBUS_RUNNER_CODE_ROOT", str(tmp_path))

    def write(source: str, name: str | None = None) -> str:
        relative = name or f"flows_{uuid.uuid4().hex[:8]}.py"
        (tmp_path / relative).write_text(textwrap.dedent(source))
        return relative

    return write

