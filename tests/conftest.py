"""Fixtures shared by the whole suite: one real nats-server, a namespace per test."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from events.bus import Bus
from events.embedded import EmbeddedNats
from events.secretbox import SecretBox
from events.settings import NatsSettings

# One key for the session: every part a test starts, in process or not, seals with it.
SESSION_SECRETS_KEY = SecretBox.generate_key()


@pytest.fixture(scope="session", autouse=True)
def _clean_environment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """No FLOWBUS_* setting of the machine leaks into a test; state goes to a temp home."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("FLOWBUS_")}
    for key in saved:
        del os.environ[key]
    os.environ["FLOWBUS_HOME"] = str(tmp_path_factory.mktemp("flowbus-home"))
    os.environ["FLOWBUS_SECRETS_KEY"] = SESSION_SECRETS_KEY
    yield
    os.environ.pop("FLOWBUS_HOME", None)
    os.environ.pop("FLOWBUS_SECRETS_KEY", None)
    os.environ.update(saved)


@pytest.fixture(autouse=True)
def _sys_path_restored() -> Iterator[None]:
    """``sys.path`` as it was before each test. Loading a flow in the test process puts
    its code root first on ``sys.path`` (as a runner does), and processes spawned later
    inherit it: a test's ``json.py`` there broke the process pool of a test that ran
    after it in the same worker."""
    saved = list(sys.path)
    yield
    sys.path[:] = saved


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedNats]:
    """One real nats-server with JetStream for the session, on a free port."""
    with EmbeddedNats(tmp_path_factory.mktemp("nats")) as server:
        yield server


def new_namespace() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def nats_settings(nats_server: EmbeddedNats) -> NatsSettings:
    """Settings pointing at the test server, in a namespace of this test's own."""
    return NatsSettings(nats_url=[nats_server.url], namespace=new_namespace())


@pytest.fixture
async def bus(nats_settings: NatsSettings) -> AsyncIterator[Bus]:
    """A connected bus with the layout created; the namespace is deleted afterwards."""
    bus = await Bus.connect(nats_settings)
    try:
        yield bus
    finally:
        if bus.is_connected:
            await bus.destroy_layout()
        await bus.close()


@pytest.fixture
def flowbus_env(nats_settings: NatsSettings, tmp_path: Path) -> dict[str, str]:
    """Environment for a flowbus subprocess talking to this test's namespace."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWBUS_")}
    env["FLOWBUS_NATS_URL"] = ",".join(nats_settings.nats_url)
    env["FLOWBUS_NAMESPACE"] = nats_settings.namespace
    env["FLOWBUS_HOME"] = str(tmp_path / "home")
    env["FLOWBUS_SECRETS_KEY"] = SESSION_SECRETS_KEY  # the key the in-process parts use
    return env


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadfile`` (the addopts) refined for this suite: see tests/parallel.py."""
    if config.getoption("dist") != "loadfile":
        return None
    from tests.parallel import FileScheduling

    return FileScheduling(config, log)


# Figures a test put in its report (``("figures", text)`` user properties, e.g. the image
# builds' times): printed at the end of the run, from whichever worker ran the test.
_figures: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "teardown":
        _figures.extend(str(text) for name, text in report.user_properties if name == "figures")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _figures:
        terminalreporter.section("figures")
        for text in _figures:
            for line in text.splitlines():
                terminalreporter.write_line(line)
