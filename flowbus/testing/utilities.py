"""`prefect_test_harness`: run a test body against throw-away flowbus state.

Inside the harness, caches, persisted results, variables and artifacts live in a
temporary ``FLOWBUS_HOME`` that is deleted afterwards, and flow and task runs send
their events nowhere (no server is used even if ``FLOWBUS_NATS_URL`` is set). On
leaving, the environment and the event sink are as they were.

Unlike Prefect's harness it starts no API server: `get_client()` inside the harness
talks to whatever ``FLOWBUS_API_URL`` names, as outside it.

Example::

    from flowbus.testing.utilities import prefect_test_harness

    @pytest.fixture(autouse=True, scope="session")
    def flowbus_harness():
        with prefect_test_harness():
            yield
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator

from flowbus import _sink

_ISOLATED = ("FLOWBUS_HOME", "FLOWBUS_NATS_URL", "FLOWBUS_EVENTS_FILE", "FLOWBUS_LOCAL_STORAGE_PATH")


@contextlib.contextmanager
def prefect_test_harness(server_startup_timeout: int | None = 30) -> Iterator[None]:
    """Run the body with throw-away local state and no event sink.

    `server_startup_timeout` is accepted for Prefect compatibility; no server starts.
    """
    saved = {name: os.environ.get(name) for name in _ISOLATED}
    with tempfile.TemporaryDirectory(prefix="flowbus-test-harness-") as home:
        was_configured = _sink._configured
        previous_sink = _sink.set_event_sink(None)
        os.environ["FLOWBUS_HOME"] = home
        os.environ.pop("FLOWBUS_NATS_URL", None)
        os.environ.pop("FLOWBUS_EVENTS_FILE", None)
        os.environ.pop("FLOWBUS_LOCAL_STORAGE_PATH", None)
        try:
            yield
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            _sink.set_event_sink(previous_sink)
            _sink._configured = was_configured


flowbus_test_harness = prefect_test_harness


def exceptions_equal(a: object, b: object) -> bool:
    """Whether two exceptions are equal, or of the same type with the same message
    (exceptions compare by identity, so a round-tripped one is never ``==``)."""
    if a == b:
        return True
    return type(a) is type(b) and str(a) == str(b)


__all__ = ["exceptions_equal", "flowbus_test_harness", "prefect_test_harness"]
