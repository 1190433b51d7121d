"""Pure logic: message to CloudEvent, event ids, secret references (no broker needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from events.source_messages import MappingFailed, SourceMessage, event_id, to_event
from events.sources import SecretRef, SourceSpec
from gateway.sources.secrets import SecretUnavailable, resolve
from gateway.sources.settings import SourcesSettings


def nats_spec(**over: object) -> SourceSpec:
    fields: dict[str, object] = {"name": "s", "kind": "nats",
                                 "connection": {"url": "nats://h:4222"},
                                 "subscription": {"subject": "a.>"}}
    fields.update(over)
    return SourceSpec.model_validate(fields)


def test_same_message_redelivered_gets_the_same_event_id() -> None:
    first = SourceMessage(b'{"a": 1}', "a.b", position="S:7")
    again = SourceMessage(b'{"a": 1}', "a.b", position="S:7")
    other = SourceMessage(b'{"a": 1}', "a.b", position="S:8")
    assert event_id(first) == event_id(again) != event_id(other)


def test_own_message_id_is_the_event_id() -> None:
    assert event_id(SourceMessage(b"x", "t", message_id="order-1", position="p")) == "order-1"


def test_message_without_id_or_position_gets_a_fresh_id() -> None:
    message = SourceMessage(b"x", "t")
    assert event_id(message) != event_id(message)


async def test_default_mapping_keeps_json_body_as_data() -> None:
    event = await to_event(nats_spec(), SourceMessage(b'{"n": 1}', "a.b", position="p"))
    assert (event.type, event.source, event.data) == ("source.s", "flowbus/sources/s", {"n": 1})
    assert event.datacontenttype == "application/json"


async def test_text_and_binary_payloads_map() -> None:
    text = await to_event(nats_spec(), SourceMessage(b"hello", "a.b"))
    assert (text.data, text.datacontenttype) == ("hello", "text/plain")
    binary = await to_event(nats_spec(), SourceMessage(b"\xff\x00", "a.b"))
    assert binary.data == b"\xff\x00"


async def test_mapping_failure_says_why() -> None:
    spec = nats_spec(mapping={"type": "x", "data": "{{ body.missing.deeper }}"})
    with pytest.raises(MappingFailed, match="mapping failed"):
        await to_event(spec, SourceMessage(b'{"n": 1}', "a.b"))


async def test_mapping_that_makes_an_invalid_type_is_a_failure() -> None:
    spec = nats_spec(mapping={"type": "{{ body.t }}"})
    with pytest.raises(MappingFailed, match="attribute 'type'"):
        await to_event(spec, SourceMessage(b'{"t": "has space"}', "a.b"))


async def test_invalid_cloudevent_is_a_failure_not_a_pass_through() -> None:
    with pytest.raises(MappingFailed, match="looks like a CloudEvent"):
        await to_event(nats_spec(), SourceMessage(b'{"specversion": "0.3", "id": "1"}', "a.b"))


async def test_passthrough_off_maps_cloudevents_like_any_message() -> None:
    body = b'{"specversion": "1.0", "id": "1", "source": "/x", "type": "a.b"}'
    event = await to_event(nats_spec(passthrough=False), SourceMessage(body, "a.b"))
    assert event.type == "source.s" and event.data["id"] == "1"


def test_secret_env_reference_must_carry_the_prefix() -> None:
    settings = SourcesSettings()
    ref = SecretRef(env="FLOWBUS_NATS_PASSWORD")
    with pytest.raises(SecretUnavailable, match="must start with 'SOURCE_SECRET_'"):
        resolve(ref, "connection.password", settings, {"FLOWBUS_NATS_PASSWORD": "x"})
    assert resolve(SecretRef(env="SOURCE_SECRET_A"), "p", settings, {"SOURCE_SECRET_A": "v"}) == "v"
    with pytest.raises(SecretUnavailable, match="is not set"):
        resolve(SecretRef(env="SOURCE_SECRET_B"), "p", settings, {})


def test_secret_file_reference_stays_in_the_secrets_directory(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("s3cret\n")
    (tmp_path / "big").write_bytes(b"x" * 70_000)
    with pytest.raises(SecretUnavailable, match="FLOWBUS_SOURCES_SECRETS_DIR"):
        resolve(SecretRef(file="pw"), "p", SourcesSettings())
    settings = SourcesSettings(secrets_dir=str(tmp_path))
    assert resolve(SecretRef(file="pw"), "p", settings) == "s3cret"
    with pytest.raises(SecretUnavailable, match="over 64 KiB"):
        resolve(SecretRef(file="big"), "p", settings)
    with pytest.raises(SecretUnavailable, match="cannot read"):
        resolve(SecretRef(file="absent"), "p", settings)
    with pytest.raises(ValueError, match="file"):
        SecretRef(file="../etc/passwd")
