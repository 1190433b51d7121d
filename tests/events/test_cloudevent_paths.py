"""The two ways :func:`events.cloudevent.from_dict` builds an event give the same result.

Plain events (the common case) skip pydantic's validation; everything else goes through
it. Whatever the input, ordinary or hostile, the outcome must be what the validating
path alone gives: the same event (fields, which were set, time text and zone, encoding)
or the same refusal (attribute and reason).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from events.cloudevent import (
    MAX_ATTRIBUTE_LENGTH,
    _plain_event,
    _validated_event,
    decode,
    decode_batch,
    encode,
    from_dict,
)
from events.errors import InvalidEvent

RECEIVED = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)

PLAIN = {"specversion": "1.0", "id": "o-1", "source": "/shop", "type": "com.example.order",
         "subject": "orders/1", "data": {"order": 1, "amount": 1999, "currency": "EUR"}}


def outcome(build: Any, obj: object, received: datetime | None) -> tuple[Any, ...]:
    try:
        event = build(obj, received)
    except InvalidEvent as exc:
        return ("refused", exc.attribute, exc.reason)
    when = event.time
    return (
        "event",
        event.__dict__,
        event.model_fields_set,
        None if when is None else (when.isoformat(), type(when.tzinfo), when.utcoffset()),
        {name: type(value) for name, value in event.extensions.items()},
        encode(event),
        event.model_dump(mode="json"),
    )


def from_dict_path(obj: object, received: datetime | None) -> Any:
    return from_dict(obj, received=received)


def assert_same(obj: object, received: datetime | None = RECEIVED) -> None:
    assert outcome(from_dict_path, obj, received) == outcome(_validated_event, obj, received)


def test_a_plain_event_skips_validation_and_equals_the_validated_one() -> None:
    plain = _plain_event(dict(PLAIN), RECEIVED)
    assert plain is not None  # the common case takes the plain path
    assert plain == _validated_event(dict(PLAIN), RECEIVED)
    assert plain.time is RECEIVED
    assert_same(dict(PLAIN))
    assert_same(dict(PLAIN), None)
    assert_same({**PLAIN, "time": "2024-05-01T12:00:00.5+02:00", "traceid": "t", "n": 7,
                 "flag": True})


@pytest.mark.parametrize("changes", [
    {"data_base64": "aGk="}, {"ratio": 1.0}, {"ratio": 1.5}, {"Upper": "x"}, {"specversion": "0.3"},
    {"id": ""}, {"id": "x" * (MAX_ATTRIBUTE_LENGTH + 1)}, {"id": 7}, {"source": None},
    {"type": "a..b"}, {"type": "flowbus.flow-run.Completed"}, {"type": "a b"}, {"type": "x" * 300},
    {"time": "2024-05-01T12:00:00"}, {"time": "yesterday"}, {"time": 1714564800}, {"time": None},
    {"subject": 5}, {"subject": "s" * (MAX_ATTRIBUTE_LENGTH + 1)}, {"datacontenttype": []},
    {"dataschema": 3}, {"ext": None}, {"ext": [1]}, {"ext": {"a": 1}}, {"ext": 2**80},
    {"data": None}, {"time": "2024-05-01T12:00:00Z", "data_base64": "!!"},
])
def test_unusual_and_hostile_events_come_out_as_validation_says(changes: dict[str, Any]) -> None:
    assert_same({**PLAIN, **changes})
    assert_same({k: v for k, v in {**PLAIN, **changes}.items() if k != "data"})


@pytest.mark.parametrize("missing", ["specversion", "id", "source", "type"])
def test_a_missing_required_attribute_is_refused_as_before(missing: str) -> None:
    obj = {k: v for k, v in PLAIN.items() if k != missing}
    assert outcome(from_dict_path, obj, RECEIVED)[0] == "refused"
    assert_same(obj)


def test_what_is_not_an_object_is_refused_as_before() -> None:
    for obj in ([PLAIN], "event", 7, None):
        assert_same(obj)


_text = st.one_of(st.text(max_size=12), st.sampled_from(
    ["", "1.0", "com.example.x", "a.b.c", "x" * (MAX_ATTRIBUTE_LENGTH + 1), "flowbus.x", "a*b",
     "\ud800", "2024-05-01T12:00:00Z", "2024-05-01T12:00:00+05:30", "2024-05-01", "aGk="]))
_scalar = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(2**63, 2**90),
                    st.floats(allow_nan=True), _text)
_json = st.recursive(_scalar, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=8)
_key = st.one_of(
    st.sampled_from(["specversion", "id", "source", "type", "time", "subject",
                     "datacontenttype", "dataschema", "data", "data_base64", "ext1", "traceid",
                     "Upper", "x" * 21, "with-dash", "extensions"]),
    st.text(max_size=6))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(changes=st.dictionaries(_key, _json, max_size=6), drop=st.sets(st.sampled_from(list(PLAIN))),
       received=st.sampled_from([RECEIVED, None, datetime(2026, 1, 1, tzinfo=timezone(
           timedelta(hours=-3)))]))
def test_any_object_gives_what_validation_alone_gives(
    changes: dict[str, Any], drop: set[str], received: datetime | None
) -> None:
    obj = {k: v for k, v in {**PLAIN, **changes}.items() if k not in drop}
    assert_same(obj, received)


def test_decoders_fill_in_the_receive_time_only_where_none_was_sent() -> None:
    timed = {**PLAIN, "id": "o-2", "time": "2024-05-01T12:00:00Z"}
    single = decode(json.dumps(PLAIN), received=RECEIVED)
    assert single.time == RECEIVED
    batch = decode_batch(json.dumps([PLAIN, timed]), received=RECEIVED)
    assert [e.time for e in batch] == [RECEIVED, datetime(2024, 5, 1, 12, tzinfo=UTC)]
    assert decode(json.dumps(PLAIN)).time is None
