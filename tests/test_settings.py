"""Settings: read once from FLOWBUS_* variables; a typo is an error, not silence."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from events.errors import SettingsError
from events.settings import NatsSettings, check_environment


def test_urls_split_on_commas() -> None:
    env = {"FLOWBUS_NATS_URL": "nats://a:4222, nats://b:4222"}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        assert NatsSettings().nats_url == ["nats://a:4222", "nats://b:4222"]


def test_unknown_variable_is_named_with_a_suggestion() -> None:
    with pytest.raises(SettingsError, match=r"FLOWBUS_NAMESPCE \(did you mean FLOWBUS_NAMESPACE\?\)"):
        check_environment({"FLOWBUS_NAMESPCE": "x", "PATH": "/bin"})


def test_known_variables_pass() -> None:
    check_environment({"FLOWBUS_NATS_URL": "nats://x:1", "FLOWBUS_HOME": "/tmp", "OTHER": "1"})


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("namespace", "Bad Name", "lowercase"),
        ("event_max_bytes", 0, "greater than 0"),
        ("nats_url", [], "at least one NATS URL"),
    ],
)
def test_bad_values_are_refused(field: str, value: object, fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        NatsSettings(**{field: value})


def test_unknown_keyword_is_refused() -> None:
    with pytest.raises(ValidationError, match="extra"):
        NatsSettings(nats_ulr="x")  # type: ignore[call-arg]


def test_every_part_s_settings_are_known_to_the_command_line() -> None:
    import importlib

    from events.settings import known_names
    from flowbus.cli._common import SETTINGS_MODULES

    for module in SETTINGS_MODULES:
        importlib.import_module(module)
    names = known_names()
    for expected in ("FLOWBUS_NATS_URL", "FLOWBUS_LOG_FORMAT", "FLOWBUS_GATEWAY_PORT",
                     "FLOWBUS_ORCHESTRATOR_METRICS_PORT", "FLOWBUS_LOGGING_LEVEL",
                     "FLOWBUS_BUNDLE_MAX_BYTES"):
        assert expected in names
