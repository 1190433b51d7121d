"""The orchestrator imports neither gateway, runners nor nats-py (docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.astparse import parse_file

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("gateway", "runners", "nats")


def test_orchestrator_imports_only_what_it_may() -> None:
    offenders = []
    for path in (ROOT / "orchestrator").rglob("*.py"):
        for node in ast.walk(parse_file(path)):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert offenders == []
