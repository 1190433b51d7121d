"""Fixtures of the image tests: the flowbus image and the example flow image, built once.

These tests are marked ``image`` (they need root, buildah and debootstrap, and the
first build bootstraps Debian, several minutes). CI runs them; deselect them locally
with ``pytest -m 'not image'``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import tomllib
from collections.abc import Iterator

import pytest

from tests.image.containers import BUILD_SCRIPT, EXAMPLE, REPO

VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
IMAGE = f"localhost/flowbus:{VERSION}"
EXAMPLE_IMAGE = f"localhost/flowbus-example-orders:{VERSION}"


def _require_tools() -> None:
    missing = [tool for tool in ("buildah", "debootstrap") if shutil.which(tool) is None]
    if missing or os.geteuid() != 0:
        pytest.fail(f"the image tests need root and buildah and debootstrap (missing: "
                    f"{', '.join(missing) or 'root'}); run scripts/install-system-deps as "
                    "root, or deselect them with -m 'not image'", pytrace=False)


# Figures of the builds a test's setup ran, until that test's report carries them.
_FIGURES: list[str] = []


def _report(text: str) -> None:
    """Keep the build's figures for the run's output (see ``_figures_to_the_report``)."""
    _FIGURES.append(text.strip())


@pytest.fixture(autouse=True)
def _figures_to_the_report(request: pytest.FixtureRequest) -> Iterator[None]:
    """The figures of the builds this test's setup ran go into its report; the run
    prints them at its end (tests/conftest.py), from whichever worker ran the test."""
    yield
    while _FIGURES:
        request.node.user_properties.append(("figures", _FIGURES.pop(0)))


def _run(args: list[str], what: str) -> None:
    started = time.monotonic()
    done = subprocess.run(args, capture_output=True, text=True, timeout=1500,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, f"{what} failed:\n{done.stdout}\n{done.stderr}"
    _report(f"{done.stdout}({what}: {time.monotonic() - started:.0f} s in the test)")


@pytest.fixture(scope="session")
def flowbus_image() -> str:
    """The image scripts/build-image builds (its base is cached between runs)."""
    _require_tools()
    _run([str(BUILD_SCRIPT)], "scripts/build-image")
    return IMAGE


@pytest.fixture(scope="session")
def example_image(flowbus_image: str) -> str:
    """The example flow image, built FROM the flowbus image by its own build script."""
    _run([str(EXAMPLE / "build")], "examples/flow-image/build")
    return EXAMPLE_IMAGE
