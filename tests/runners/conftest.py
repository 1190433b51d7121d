"""Fixtures of the runner tests."""

from __future__ import annotations

import textwrap
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture
def flow_file(tmp_path: Path) -> Callable[[str], str]:
    """Write flow source to a file; returns the path to use in an entrypoint."""

    def write(source: str, name: str | None = None) -> str:
        path = tmp_path / (name or f"flows_{uuid.uuid4().hex[:8]}.py")
        path.write_text(textwrap.dedent(source))
        return str(path)

    return write

