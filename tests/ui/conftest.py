from __future__ import annotations

from collections.abc import Iterator

import pytest

from events.embedded import EmbeddedNats
from tests.conftest import new_namespace
from tests.ui.browser import shared_chromium
from tests.ui.stack import Stack, start_stack, stop_stack


@pytest.fixture(scope="module")
def stack(nats_server: EmbeddedNats, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """gateway (auth on, admin + read-only + write keys), orchestrator and runner processes."""
    running = start_stack(nats_server.url, new_namespace(), tmp_path_factory.mktemp("ui"))
    try:
        yield running
    finally:
        stop_stack(running)


@pytest.fixture(scope="module", autouse=True)
def _one_browser() -> Iterator[None]:
    """The module's tests share one Chromium, each in contexts of its own."""
    with shared_chromium():
        yield
