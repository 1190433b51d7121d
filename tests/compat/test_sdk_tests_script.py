"""The pure parts of bench/prefect_sdk_tests.py: the renaming and the tally."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module")
def script() -> Iterator[ModuleType]:
    spec = importlib.util.spec_from_file_location("prefect_sdk_tests", BENCH / "prefect_sdk_tests.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["prefect_sdk_tests"] = module  # dataclasses look their module up
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("prefect_sdk_tests", None)


def test_imports_and_dotted_names_are_renamed(script: ModuleType) -> None:
    source = (
        "import prefect\n"
        "from prefect import flow, task\n"
        "from prefect.states import Completed\n"
        "import prefect.results\n"
        "    from prefect import get_run_logger\n"
        "x = prefect.context.get_run_context()\n"
    )
    assert script.to_flowbus(source) == (
        "import flowbus; prefect = flowbus\n"
        "from flowbus import flow, task\n"
        "from flowbus.states import Completed\n"
        "import flowbus.results\n"
        "    from flowbus import get_run_logger\n"
        "x = flowbus.context.get_run_context()\n"
    )


def test_words_and_paths_that_are_not_the_package_stay(script: ModuleType) -> None:
    source = 'name = "my_prefect.thing"\npath = "src/prefect.yaml"\nPrefect = 1\nprefect_home = 2\n'
    assert script.to_flowbus(source) == source


def test_tally_counts_only_tests_passing_with_prefect_that_need_no_server(script: ModuleType) -> None:
    prefect = {
        "tests/test_a.py::test_ok": {"outcome": "passed", "needs_server": False},
        "tests/test_a.py::test_fails_here": {"outcome": "passed", "needs_server": False},
        "tests/test_a.py::test_uses_db": {"outcome": "passed", "needs_server": True},
        "tests/test_a.py::test_fails_on_prefect": {"outcome": "failed", "needs_server": False},
        "tests/test_b.py::test_one": {"outcome": "passed", "needs_server": False},
    }
    flowbus = {
        "tests/test_a.py::test_ok": {"outcome": "passed", "needs_server": False},
        "tests/test_a.py::test_fails_here": {"outcome": "failed", "error": "E   AssertionError: 1 == 2"},
        "tests/test_a.py::test_uses_db": {"outcome": "failed"},
        "tests/test_a.py::test_fails_on_prefect": {"outcome": "passed"},
        "tests/test_b.py": {"outcome": "collection error", "error": "E   ImportError: cannot import name 'x'"},
    }
    by_module = script.tally(prefect, flowbus)
    assert (by_module["tests/test_a.py"].counted, by_module["tests/test_a.py"].passed) == (2, 1)
    assert dict(by_module["tests/test_a.py"].failures) == {"E   AssertionError: 1 == 2": 1}
    assert (by_module["tests/test_b.py"].counted, by_module["tests/test_b.py"].passed) == (1, 0)
    assert dict(by_module["tests/test_b.py"].failures) == {
        "module not importable: E   ImportError: cannot import name 'x'": 1
    }
