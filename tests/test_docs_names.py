"""Docs are claims: every module, CLI command, setting and API path they name exists.

Checked over README.md, CHANGELOG.md's unreleased notes are not (they tell history),
and every page of docs/. A name inside backticks is a claim:

- ``events.bus`` / ``runners/service.py`` / ``flowbus._sink.set_event_sink``: the
  module (or file) exists, and so does the attribute after it;
- ``flowbus deployment run``: the command exists (options are not checked);
- ``FLOWBUS_GATEWAY_PORT``: a setting some part reads;
- ``GET /api/v1/deployments/{name}``, ``/api/v1/...``: a route of the REST API.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import click
import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
PACKAGES = ("events", "flowbus", "gateway", "orchestrator", "runners")

CODE = re.compile(r"`([^`\n]+)`")
DOTTED = re.compile(
    rf"^(?:{'|'.join(PACKAGES)})(?:\.[A-Za-z_][A-Za-z0-9_]*)+(?::[A-Za-z_][A-Za-z0-9_]*)?(?![\w-])")
FILE = re.compile(rf"^(?:{'|'.join(PACKAGES)})/[A-Za-z0-9_/]+\.py(?::[A-Za-z_][A-Za-z0-9_.]*)?$")
SETTING = re.compile(r"\bFLOWBUS_[A-Z][A-Z0-9_]*[A-Z0-9]\b")
COMMAND = re.compile(r"^flowbus ([a-z][a-z-]*(?: [a-z][a-z-]*)*)")
ROUTE = re.compile(r"^(?:(GET|POST|PUT|PATCH|DELETE) )?(/api/v1/[^\s?]*)")

# Names the docs use on purpose that are not settings of a part: the namespace-derived
# stream names, and prefixes written with a trailing underscore.
NOT_SETTINGS = {"FLOWBUS_EVENTS", "FLOWBUS_RUNS", "FLOWBUS_LOGS", "FLOWBUS_TASKS"}


def _is_module_claim(text: str) -> bool:
    """``flowbus.`` also starts event types (``flowbus.flow-run.Completed``), labels and
    logger names: under it, only names of real submodules (or private ``_x``) count."""
    package, _, rest = text.partition(".")
    if package != "flowbus":
        return True
    first = rest.split(".", 1)[0]
    return first.startswith("_") or (ROOT / "flowbus" / f"{first}.py").is_file() or (
        ROOT / "flowbus" / first).is_dir()


def _claims(pattern: re.Pattern[str]) -> list[tuple[str, str]]:
    out = []
    for page in PAGES:
        for match in CODE.finditer(page.read_text()):
            text = match.group(1).strip()
            found = pattern.match(text)
            if found and (pattern is not DOTTED or _is_module_claim(text)):
                out.append((page.name, found.group(0)))
    return sorted(set(out))


def _resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


@pytest.mark.parametrize(("page", "name"), _claims(DOTTED))
def test_named_modules_exist(page: str, name: str) -> None:
    assert _resolves(name.replace(":", ".")), f"{page} names {name}, which does not exist"


@pytest.mark.parametrize(("page", "name"), _claims(FILE))
def test_named_files_exist(page: str, name: str) -> None:
    path, _, attr = name.partition(":")
    assert (ROOT / path).is_file(), f"{page} names {path}, which does not exist"
    if attr:
        module = path.removesuffix(".py").replace("/", ".")
        assert _resolves(f"{module}.{attr}"), f"{page} names {name}, which does not exist"


def _known_settings() -> set[str]:
    from events.settings import known_names
    from flowbus.cli._common import SETTINGS_MODULES

    for module in SETTINGS_MODULES:
        importlib.import_module(module)
    return known_names()


def _settings_named() -> list[tuple[str, str]]:
    out = set()
    for page in PAGES:
        for match in CODE.finditer(page.read_text()):
            for name in SETTING.findall(match.group(1)):
                out.add((page.name, name))
    return sorted(out)


@pytest.mark.parametrize(("page", "name"), _settings_named())
def test_named_settings_exist(page: str, name: str) -> None:
    if name in NOT_SETTINGS:
        return
    known = _known_settings()
    # A prefix such as FLOWBUS_GATEWAY_ names a family of settings; a variable of one of
    # the scripts (scripts/build-image's FLOWBUS_IMAGE_CACHE) is read there.
    assert name in known or any(k.startswith(name + "_") for k in known) or _script_reads(name), (
        f"{page} names the setting {name}, which no part reads")


def _script_reads(name: str) -> bool:
    return any(name in path.read_text(errors="replace")
               for path in (ROOT / "scripts").iterdir() if path.is_file())


def _command_exists(words: list[str]) -> bool:
    from flowbus.cli import cli

    command: click.Command = cli
    for i, word in enumerate(words):
        if not isinstance(command, click.Group):
            return i > 0  # the rest are arguments
        sub = command.get_command(click.Context(command), word)
        if sub is None:
            return i > 0 and not isinstance(command, click.Group)
        command = sub
    return True


@pytest.mark.parametrize(("page", "name"), _claims(COMMAND))
def test_named_commands_exist(page: str, name: str) -> None:
    words = name.split()[1:]
    assert _command_exists(words), f"{page} names `{name}`, which is not a command"


def _routes() -> list[tuple[str, re.Pattern[str]]]:
    from gateway.api import routers

    out = [("GET", re.compile(r"/api/v1/openapi\.json$"))]
    for router in routers():
        for endpoint in router.endpoints:
            pattern = re.sub(r"\\\{[a-z_]+\\\}", "[^/]+", re.escape("/api/v1" + endpoint.path))
            out.append((endpoint.method, re.compile(pattern + "$")))
    return out


@pytest.mark.parametrize(("page", "name"), _claims(ROUTE))
def test_named_api_paths_exist(page: str, name: str) -> None:
    found = ROUTE.match(name)
    assert found is not None
    # `/api/v1/deployments[/{name}[/pause, ...]]` names the route before the brackets.
    method, path = found.group(1), re.split(r"[\[,]", found.group(2))[0].rstrip("/")
    path = re.sub(r"\{[^}]+\}|<[^>]+>", "x", path)
    assert any((method is None or method == m) and p.match(path) for m, p in _routes()), (
        f"{page} names {name}, which is not a route of the REST API")


def test_the_checks_see_the_docs() -> None:
    """The patterns find claims of every kind (a broken pattern would check nothing)."""
    assert len(_claims(DOTTED)) > 20 and len(_claims(COMMAND)) > 10
    assert len(_settings_named()) > 20 and len(_claims(ROUTE)) > 5


def test_a_stale_name_is_caught() -> None:
    assert not _resolves("events.sdk_sink.nats_event_sink")
    assert not _resolves("flowbus._sink.NATS_SINK_FACTORY")
    assert not _command_exists(["deployment", "runn"])
    assert _command_exists(["deployment", "run"])
    assert not any(p.match("/api/v1/nothing-here") for _, p in _routes())
