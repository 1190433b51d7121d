"""The dependency rule of docs/architecture.md, checked over the import graph.

- events/ imports only the standard library and its few libraries;
- gateway, orchestrator and runners never import each other;
- only runners (and the command line) may import the SDK;
- nothing outside events/ talks to nats-py;
- the command line imports the services lazily, inside the command that needs them;
  so does ``flowbus/serving.py`` (``flow.serve()`` runs a runner in the user's process).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from tests.astparse import parse_file

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("events", "flowbus", "gateway", "orchestrator", "runners")
SERVICES = {"gateway", "orchestrator", "runners"}
# Beyond docs/architecture.md's list (pydantic, nats-py, cloudevents): jinja2 (templates),
# croniter and dateutil (schedules), celpy (`when:` expressions) validate definitions that
# every part reads, and jsonschema checks run parameters against a deployment's schema
# wherever a run is asked for, so they sit with the shared schema (docs/contract.md,
# "Shared libraries"); cryptography seals the secrets that several parts store
# (events/secretbox.py).
EVENTS_MAY_USE = {"pydantic", "pydantic_settings", "nats", "cloudevents", "jinja2", "croniter",
                  "dateutil", "celpy", "jsonschema", "cryptography"}
MAY_IMPORT = {
    "events": {"events"},
    "flowbus": {"events", "flowbus"},
    "gateway": {"events", "gateway"},
    "orchestrator": {"events", "orchestrator"},
    "runners": {"events", "flowbus", "runners"},
}


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(top-level module, imported at module level?) for every import in ``path``."""
    tree = parse_file(path)
    top_level_nodes = {id(node) for node in tree.body}
    found: list[tuple[str, bool]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found.extend((name.split(".")[0], id(node) in top_level_nodes) for name in names)
    return found


def violations(package: str, path: Path, *, is_cli: bool = False) -> list[str]:
    """Every import in ``path`` that breaks the dependency rule for ``package``."""
    out = []
    for module, at_top in _imports(path):
        if module in sys.stdlib_module_names or module == "__future__":
            continue
        if module == "nats" and package != "events":
            out.append(f"{path.name}: only events/ may import nats-py")
        if module in PACKAGES:
            if is_cli and module in SERVICES:
                if at_top:
                    out.append(f"{path.name}: the CLI must import {module} inside the command")
            elif module not in MAY_IMPORT[package]:
                out.append(f"{path.name} ({package}) must not import {module}")
        elif package == "events" and module not in EVENTS_MAY_USE:
            out.append(f"events/{path.name} must not depend on {module}")
    return out


def _cases() -> list[tuple[str, Path]]:
    return [(package, path) for package in PACKAGES for path in _modules(package)]


@pytest.mark.parametrize(("package", "path"), _cases(), ids=lambda v: str(v).rsplit("/", 2)[-1])
def test_module_respects_the_dependency_rule(package: str, path: Path) -> None:
    is_cli = path.is_relative_to(ROOT / "flowbus" / "cli") or path == ROOT / "flowbus" / "serving.py"
    assert violations(package, path, is_cli=is_cli) == []


def test_the_checker_catches_violations(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import nats\nfrom orchestrator import service\nimport requests\n"
                   "def f():\n    import runners\n")
    assert len(violations("gateway", bad)) == 3  # nats, orchestrator, runners
    assert len(violations("events", bad)) == 3  # orchestrator, runners, requests (nats is fine)
    cli = tmp_path / "cli.py"
    cli.write_text("import gateway\ndef cmd():\n    import runners\n")
    assert violations("flowbus", cli, is_cli=True) == ["cli.py: the CLI must import gateway inside the command"]


def test_the_rule_sees_every_package() -> None:
    assert all(_modules(p) for p in PACKAGES)
