"""The SDK tests' fixtures: a private FLOWBUS_HOME per test, and a collecting sink."""

from tests.sdk.conftest import CollectingSink, flowbus_home, sink  # noqa: F401
