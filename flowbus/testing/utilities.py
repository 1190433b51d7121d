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
from typing import Any

from flowbus import _sink

_ISOLATED = ("FLOWBUS_HOME", "FLOWBUS_NATS_URL", "FLOWBUS_EVENTS_FILE", "FLOWBUS_LOCAL_STORAGE_PATH")


@contextlib.contextmanager
def prefect_test_harness(server_startup_timeout: int | None = 30) -> Iterator[None]:
    """Run the body with throw-away local state and no event sink.

    `server_startup_timeout` is accepted for Prefect compatibility; no server starts.
    """
    saved = {name: os.environ.get(name) for name in _ISOLATED}
    with tempfile.TemporaryDirectory(prefix="flowbus-test-harness-") as home:
        was_chosen = _sink.sink_chosen()
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
            if was_chosen:
                _sink.set_event_sink(previous_sink)
            else:  # the null sink, and the environment read again at the next use
                _sink.forget_event_sink()


flowbus_test_harness = prefect_test_harness


def exceptions_equal(a: object, b: object) -> bool:
    """Whether two exceptions are equal, or of the same type with the same message
    (exceptions compare by identity, so a round-tripped one is never ``==``)."""
    if a == b:
        return True
    return type(a) is type(b) and str(a) == str(b)


def assert_blocks_equal(found: Any, expected: Any, exclude_private: bool = True, **kwargs: Any) -> None:
    """Assert two blocks (or file systems) are of the same type with the same settings.

    Pydantic blocks compare by `model_dump` (``kwargs`` passed on), private
    attributes left out unless ``exclude_private=False``; other objects by their
    public attributes.
    """
    assert isinstance(found, type(expected)), f"Unexpected type {type(found).__name__}, expected {type(expected).__name__}"
    if hasattr(found, "model_dump"):
        exclude = set(kwargs.pop("exclude", set()))
        if exclude_private:
            exclude |= set(getattr(found, "__private_attributes__", {}))
        assert found.model_dump(exclude=exclude, **kwargs) == expected.model_dump(exclude=exclude, **kwargs)
        return

    def public(obj: Any) -> dict[str, Any]:
        return {k: v for k, v in vars(obj).items() if not (exclude_private and k.startswith("_"))}

    assert public(found) == public(expected)


def _stored_result(state: Any) -> Any:
    from flowbus.states import ResultRef

    ref = state.data
    # A state holds a reference to its stored result when the run kept it out of memory
    # (cache_result_in_memory=False) or the state was read back from elsewhere.
    assert isinstance(ref, ResultRef), f"the state holds no stored result reference (its data is {type(ref).__name__})"
    return ref


async def assert_uses_result_serializer(state: Any, serializer: Any, client: Any = None) -> None:
    """Assert the state's persisted result was written with `serializer` (an object or
    a name) and reads back with it. ``client`` is accepted for Prefect's signature."""
    from flowbus.serializers import resolve_serializer

    ref = _stored_result(state)
    expected = resolve_serializer(serializer)
    assert ref.serializer.name == expected.name, f"serializer {ref.serializer.name!r}, expected {expected.name!r}"
    data = ref.store.read(ref.key)
    assert data is not None, f"result {ref.key!r} is not in its store"
    expected.loads(data)


async def assert_uses_result_storage(state: Any, storage: Any, client: Any = None) -> None:
    """Assert the state's persisted result is in `storage` (a store, a file system or a
    directory). ``client`` is accepted for Prefect's signature."""
    from flowbus.results import resolve_result_store

    ref = _stored_result(state)
    target = resolve_result_store(storage)
    assert ref.store is target or target.read(ref.key) == ref.store.read(ref.key) is not None, (
        f"result {ref.key!r} is not stored in {storage!r}"
    )


__all__ = [
    "assert_blocks_equal",
    "assert_uses_result_serializer",
    "assert_uses_result_storage",
    "exceptions_equal",
    "flowbus_test_harness",
    "prefect_test_harness",
]
