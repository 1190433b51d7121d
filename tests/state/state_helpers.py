"""Helpers of the run-time state tests."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_script(env: dict[str, str], source: str, timeout: float = 60) -> str:
    """Run a Python program in a process of its own; its stdout (failing on a non-zero exit)."""
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(source)], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=timeout, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout
