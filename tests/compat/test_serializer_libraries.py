"""The serializer objects call the libraries and hooks they are given, as Prefect 3.8.8's do.

Each expectation was run on Prefect 3.8.8 first (``prefect.serializers``).
"""

from __future__ import annotations

import base64
import datetime
import io
import json
import pickle
import uuid
from typing import Any

import pytest

from flowbus import flow, task
from flowbus.serializers import (
    JSONSerializer,
    PickleSerializer,
    prefect_json_object_decoder,
    prefect_json_object_encoder,
    resolve_serializer,
)


class _Recorder:
    """A stand-in library module that records what it was called with."""

    def __init__(self, result: Any) -> None:
        self.calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
        self.result = result

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append((args, kwargs))
        return self.result


def test_pickle_serializer_calls_its_picklelib_and_base64_encodes(monkeypatch: pytest.MonkeyPatch) -> None:
    dumps, loads = _Recorder(b"pickled"), _Recorder("value")
    monkeypatch.setattr(pickle, "dumps", dumps)
    monkeypatch.setattr(pickle, "loads", loads)
    serializer = PickleSerializer(picklelib="pickle")
    assert serializer.dumps("value") == base64.encodebytes(b"pickled")
    assert dumps.calls == [(("value",), {})]
    assert serializer.loads(base64.encodebytes(b"pickled")) == "value"
    assert loads.calls == [((b"pickled",), {})]


def test_pickles_by_object_and_by_name_read_each_other() -> None:
    value = {"when": datetime.date(2024, 1, 2), "id": uuid.UUID(int=7)}
    by_object, by_name = PickleSerializer(), resolve_serializer("cloudpickle")
    assert pickle.loads(base64.decodebytes(by_object.dumps(value))) == value, "base64 of the pickle"
    assert by_name.loads(by_object.dumps(value)) == value
    assert by_object.loads(by_name.dumps(value)) == value


def test_json_serializer_calls_its_jsonlib_with_prefects_hooks(monkeypatch: pytest.MonkeyPatch) -> None:
    orjson = pytest.importorskip("orjson")
    dumps, loads = _Recorder(b'"x"'), _Recorder("x")
    monkeypatch.setattr(orjson, "dumps", dumps)
    monkeypatch.setattr(orjson, "loads", loads)
    serializer = JSONSerializer(jsonlib="orjson")
    serializer.dumps("x")
    serializer.loads(b'"x"')
    assert dumps.calls == [(("x",), {"default": prefect_json_object_encoder})]
    assert loads.calls == [(('"x"',), {"object_hook": prefect_json_object_decoder})], "loads is given text"


def test_json_serializer_passes_its_kwargs_through(monkeypatch: pytest.MonkeyPatch) -> None:
    dumps, loads = _Recorder("{}"), _Recorder({})
    monkeypatch.setattr(json, "dumps", dumps)
    monkeypatch.setattr(json, "loads", loads)
    serializer = JSONSerializer(dumps_kwargs={"indent": 2}, loads_kwargs={"parse_float": str})
    assert serializer.dumps({}) == b"{}"
    serializer.loads(b"{}")
    assert dumps.calls == [(({},), {"default": prefect_json_object_encoder, "indent": 2})]
    assert loads.calls == [(("{}",), {"object_hook": prefect_json_object_decoder, "parse_float": str})]


def test_json_serializer_without_hooks_passes_none() -> None:
    plain = JSONSerializer(object_encoder=None, object_decoder=None)
    with pytest.raises(TypeError):
        plain.dumps({"when": datetime.date(2024, 1, 2)})
    assert plain.loads(b'{"__class__": "uuid.UUID", "data": "x"}') == {"__class__": "uuid.UUID", "data": "x"}


def test_json_by_object_and_by_name_read_each_other() -> None:
    value = {"when": datetime.datetime(2024, 1, 2, 3), "id": uuid.UUID(int=1), "ids": {1, 2}, "raw": b"ab"}
    by_object, by_name = JSONSerializer(), resolve_serializer("json")
    assert b'"__class__": "datetime.datetime"' in by_object.dumps(value)
    assert by_name.loads(by_object.dumps(value)) == value
    assert by_object.loads(by_name.dumps(value)) == value


def test_io_objects_become_prefects_placeholder_without_being_read() -> None:
    stream = io.StringIO("content")
    stored = json.loads(JSONSerializer().dumps({"stream": stream}))["stream"]
    assert stream.tell() == 0 and stream.read() == "content"
    assert stored == {
        "__class__": "_io.StringIO",
        "data": f"<Prefect IOStream Placeholder: type=StringIO, repr={stream!r} (original content not read)>",
    }


def test_a_task_with_a_pickle_serializer_object_round_trips(tmp_path: Any) -> None:
    @task(persist_result=True, result_serializer=PickleSerializer(picklelib="pickle"), result_storage=str(tmp_path))
    def make() -> set[int]:
        return {1, 2}

    @flow
    def pipeline() -> set[int]:
        return make()

    assert pipeline() == {1, 2}


async def test_an_async_task_with_a_json_serializer_object_round_trips(tmp_path: Any) -> None:
    @task(persist_result=True, result_serializer=JSONSerializer(), result_storage=str(tmp_path))
    async def make() -> datetime.date:
        return datetime.date(2024, 5, 6)

    @flow
    async def pipeline() -> datetime.date:
        return await make()

    assert await pipeline() == datetime.date(2024, 5, 6)
