"""The test and lint tools stay pinned exactly (CONTRIBUTING.md says how to move them)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PINNED = ("pytest", "pytest-asyncio", "pytest-timeout", "pytest-xdist", "hypothesis",
          "schemathesis", "ruff", "mypy")


def test_tools_that_change_behaviour_are_pinned_exactly() -> None:
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]["test"]
    specs = {re.split(r"[<>=!~ ;\[]", spec, maxsplit=1)[0].lower(): spec for spec in extra}
    loose = {name: specs.get(name) for name in PINNED
             if not re.fullmatch(rf"{re.escape(name)}==[0-9][0-9A-Za-z.]*", specs.get(name, ""))}
    assert not loose, f"pin these exactly (see CONTRIBUTING.md): {loose}"


def test_contributing_names_every_pinned_tool() -> None:
    text = (ROOT / "CONTRIBUTING.md").read_text()
    assert all(f"`{name}`" in text for name in PINNED)
