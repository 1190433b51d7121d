"""Helpers the gateway tests share (fixtures are in conftest.py)."""

from __future__ import annotations

from typing import Any

from tests.stored import stored_events

__all__ = ["ADMIN_KEY", "problem", "stored_events"]

ADMIN_KEY = "admin-key-for-the-tests-0123456789"


def problem(body: dict[str, Any]) -> str:
    """The detail of a problem body (asserting it is one)."""
    assert {"type", "title", "status", "detail"} <= set(body), body
    return str(body["detail"])
