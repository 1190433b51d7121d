"""A pytest plugin that ``bench/prefect_sdk_tests.py`` loads into each side's run.

It writes, to the JSON file named by ``SDK_PROBE_OUT``, every collected test with the
outcome of its run and whether it needs Prefect's own database or server. The rule for
the latter (docs/compat.md): the test asks, itself or through the fixtures it asks for
(autouse fixtures aside, since they are the environment every test gets), for a fixture
defined in one of ``SERVER_FIXTURE_FILES`` or named in ``SERVER_FIXTURES``. Such a
test is skipped on both sides, since it is never counted.
"""

from __future__ import annotations

import inspect
import json
import os
from typing import Any

import pytest

# Prefect's test fixtures that build database rows, an API app or a client of it.
SERVER_FIXTURE_FILES = ("tests/fixtures/database.py", "tests/fixtures/api.py", "tests/fixtures/client.py")
# prefect.testing.fixtures's fixtures that start or read a server or its event pipeline.
SERVER_FIXTURES = frozenset(
    {"hosted_api_server", "enable_ephemeral_server", "events_server", "events_pipeline", "emitting_events_pipeline"}
)

_records: dict[str, dict[str, Any]] = {}


def _defined_in(fixturedef: Any) -> str:
    try:
        return (inspect.getsourcefile(fixturedef.func) or "").replace(os.sep, "/")
    except TypeError:
        return ""


def needs_server(item: pytest.Item) -> bool:
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return False
    seen: set[str] = set()
    todo = list(info.argnames) + [
        name for mark in item.iter_markers("usefixtures") for name in mark.args if isinstance(name, str)
    ]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        if name in SERVER_FIXTURES:
            return True
        for fixturedef in info.name2fixturedefs.get(name, ()):
            if _defined_in(fixturedef).endswith(SERVER_FIXTURE_FILES):
                return True
            todo.extend(fixturedef.argnames)
    return False


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A test that needs the server is never counted, so neither side runs it: some wait
    # for events no pipeline delivers, and its fixtures are not bounded by the timeout.
    skip = pytest.mark.skip(reason="needs Prefect's database or server: not counted")
    for item in items:
        server = needs_server(item)
        _records[item.nodeid] = {"outcome": "not run", "needs_server": server}
        if server:
            item.add_marker(skip)


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.failed:
        _records[report.nodeid] = {"outcome": "collection error", "needs_server": False,
                                   "error": str(report.longrepr)[-400:]}  # fmt: skip


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    record = _records.setdefault(report.nodeid, {"outcome": "not run", "needs_server": False})
    if report.failed:
        record["outcome"] = "failed"
        text = str(report.longrepr)
        lines = [line for line in text.splitlines() if line.startswith("E ")]
        record["error"] = (lines[0] if lines else text.splitlines()[-1] if text else "")[:300]
    elif report.when == "call" and record["outcome"] == "not run":
        record["outcome"] = "skipped" if report.skipped else "passed"
    elif report.skipped and record["outcome"] == "not run":
        record["outcome"] = "skipped"


def pytest_sessionfinish() -> None:
    with open(os.environ["SDK_PROBE_OUT"], "w", encoding="utf-8") as out:
        json.dump(_records, out)
