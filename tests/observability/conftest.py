"""Real Prometheus tools for the observability tests (Debian's `prometheus` package)."""

from __future__ import annotations

import shutil
import subprocess

import pytest


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: install the system test dependencies with "
                    "scripts/install-system-deps (Debian package 'prometheus')")
    return path


@pytest.fixture(scope="session")
def promtool() -> str:
    return _tool("promtool")


@pytest.fixture(scope="session")
def prometheus_bin() -> str:
    return _tool("prometheus")


def check_metrics(promtool: str, text: str) -> str:
    """promtool's verdict on an exposition: '' when clean, else its complaints."""
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                            text=True, timeout=30, check=False)
    return "" if result.returncode == 0 else (result.stdout + result.stderr).strip() or "failed"
