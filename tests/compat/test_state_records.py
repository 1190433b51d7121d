"""Result records in states, as Prefect 3.8.8's public helpers make them: the
`ResultStore` record methods, `return_value_to_state(value, store, ...)` (a coroutine)
and its sync twin, `exception_to_*_state(..., result_store=)`, the exception of a state
holding a record's metadata, `to_state_create`, `State.result()` awaitable in async
code, and JSON results of exceptions, models and dataclasses. Each expectation was
run on Prefect 3.8.8 first, with the same snippet."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from pathlib import Path
from typing import Any

import pydantic
import pytest

from flowbus import flow
from flowbus._internal.states import (
    exception_to_crashed_state_sync,
    exception_to_failed_state_sync,
    return_value_to_state_sync,
)
from flowbus.exceptions import FailedRun
from flowbus.results import ResultRecord, ResultStore
from flowbus.serializers import JSONSerializer, resolve_serializer
from flowbus.states import (
    Cancelled,
    Completed,
    Failed,
    Paused,
    Running,
    State,
    aget_state_exception,
    araise_state_exception,
    exception_to_crashed_state,
    exception_to_failed_state,
    get_state_exception,
    raise_state_exception,
    return_value_to_state,
    to_state_create,
)


@pytest.fixture
def store(tmp_path: Path) -> ResultStore:
    return ResultStore(result_storage=tmp_path / "results")


def test_a_record_is_made_then_written_under_its_absolute_path(store: ResultStore, tmp_path: Path) -> None:
    record = store.create_result_record({"a": 1}, key="k1")
    path = Path(record.metadata.storage_key or "")
    assert path.is_absolute() and path.name == "k1" and path.parent == (tmp_path / "results").resolve()
    assert not record.is_persisted and not path.exists()
    store.persist_result_record(record)
    assert record.is_persisted and path.exists()
    again = ResultStore(result_storage=tmp_path / "results", cache_result_in_memory=False)
    assert again.read(str(path)).result == {"a": 1} and again.exists(str(path))
    assert not again.exists("never-written")
    with pytest.raises(ValueError, match="does not exist"):
        again.read("never-written")


def test_a_record_key_defaults_to_the_store_key_function(tmp_path: Path) -> None:
    store = ResultStore(result_storage=tmp_path, storage_key_fn=lambda: "fixed-key")
    store.write({"x": 2})
    assert store.read("fixed-key").result == {"x": 2}


async def test_records_are_written_and_read_from_async_code(store: ResultStore) -> None:
    record = store.create_result_record([1, 2])
    await store.apersist_result_record(record)
    assert record.is_persisted
    fresh = ResultStore(result_storage=store.result_storage, cache_result_in_memory=False)
    assert (await fresh.aread(record.metadata.storage_key or "")).result == [1, 2]


def test_return_value_to_state_sync_covers_each_branch(store: ResultStore) -> None:
    plain = return_value_to_state_sync("x", store)
    assert plain.is_completed() and isinstance(plain.data, ResultRecord) and plain.result() == "x"

    manual = Completed(message="m")
    same = return_value_to_state_sync(manual, store)
    assert same is manual and isinstance(same.data, ResultRecord) and same.result() is None

    aggregate = return_value_to_state_sync([Completed(), Failed(message="f")], store)
    assert aggregate.is_failed() and aggregate.message == "1/2 states failed."
    assert aggregate.result(raise_on_failure=False)[1].message == "f"
    cancelled = return_value_to_state_sync([Completed(), Cancelled()], store)
    assert cancelled.is_cancelled() and cancelled.message == "1/2 states cancelled."
    paused = return_value_to_state_sync([Completed(), Paused()], store)
    assert paused.is_paused() and paused.message == "1/2 states paused."
    unfinished = return_value_to_state_sync([Completed(), Running()], store)
    assert unfinished.is_failed() and unfinished.message == "1/2 states are not final."

    assert return_value_to_state_sync((i for i in range(3)), store).result() == [0, 1, 2]
    record = store.create_result_record(42)
    kept = return_value_to_state_sync(record, store)
    assert kept.is_completed() and kept.data is record and kept.result() == 42
    assert return_value_to_state_sync({"a": Failed()}, store).is_completed()

    other_run = Completed(data="v", state_details={"task_run_id": str(uuid.uuid4())})
    wrapped = return_value_to_state_sync(other_run, store)
    assert wrapped is not other_run and wrapped.message == "All states completed."
    assert wrapped.result() == other_run


def test_return_value_to_state_writes_only_when_asked(store: ResultStore) -> None:
    unwritten = return_value_to_state_sync(Completed(data=5), store)
    assert not Path(unwritten.data.metadata.storage_key).exists()
    written = return_value_to_state_sync(Completed(data=5), store, key="k2", write_result=True)
    path = Path(written.data.metadata.storage_key)
    assert path.exists() and path.name == "k2" and written.result() == 5
    user_record = store.create_result_record("mine")
    state = Completed(data=user_record)
    assert return_value_to_state_sync(state, store).data is user_record


async def test_return_value_to_state_is_a_coroutine(store: ResultStore) -> None:
    call = return_value_to_state("y", store, write_result=True)
    assert asyncio.iscoroutine(call)
    state = await call
    assert await asyncio.to_thread(Path(state.data.metadata.storage_key).exists)
    assert await state.result() == "y" and state.result(_sync=True) == "y"
    aggregate = await return_value_to_state([Completed(), Failed()], store)
    assert aggregate.is_failed() and aggregate.message == "1/2 states failed."


def test_exception_states_hold_a_record_with_a_store(store: ResultStore) -> None:
    failed = exception_to_failed_state_sync(ValueError("v"), result_store=store, write_result=True)
    assert failed.message == "ValueError: v" and isinstance(failed.data, ResultRecord)
    assert Path(failed.data.metadata.storage_key).exists()
    assert repr(failed.result(raise_on_failure=False)) == "ValueError('v')"
    crashed = exception_to_crashed_state_sync(KeyboardInterrupt(), result_store=store)
    assert crashed.message == "Execution was aborted by an interrupt signal."
    assert isinstance(crashed.data, ResultRecord) and not crashed.data.is_persisted
    plain = exception_to_failed_state(ValueError("p"), message="While working:")
    assert plain.message == "While working: ValueError: p" and isinstance(plain.data, ValueError)


async def test_exception_states_with_a_store_in_async_code(store: ResultStore) -> None:
    failed = await exception_to_failed_state(ValueError("w"), result_store=store, write_result=True)
    assert await asyncio.to_thread(Path(failed.data.metadata.storage_key).exists)
    crashed = await exception_to_crashed_state(ValueError("q"), result_store=store)
    assert crashed.message == "Execution was interrupted by an unexpected exception: ValueError: q"


@pytest.mark.parametrize("state_cls", [Failed, Cancelled])
def test_the_exception_of_a_state_holding_record_metadata_is_read(store: ResultStore, state_cls: Any) -> None:
    record = store.create_result_record(ValueError("persisted error"))
    store.persist_result_record(record)
    state = state_cls(data=record.metadata)
    assert repr(get_state_exception(state)) == "ValueError('persisted error')"
    with pytest.raises(ValueError, match="persisted error"):
        raise_state_exception(state)


async def test_the_exception_of_record_metadata_in_async_code(store: ResultStore) -> None:
    record = store.create_result_record(ValueError("async error"))
    await store.apersist_result_record(record)
    assert repr(await aget_state_exception(Failed(data=record.metadata))) == "ValueError('async error')"
    with pytest.raises(ValueError, match="async error"):
        await araise_state_exception(Failed(data=record.metadata))
    assert repr(await Completed(data=record.metadata).result()) == "ValueError('async error')"


def test_state_exception_rules() -> None:
    assert repr(Failed(data="t").result(raise_on_failure=False)) == "'t'"
    assert repr(Failed().result(raise_on_failure=False)) == "FailedRun('Run failed.')"
    with pytest.raises(ValueError, match="Expected failed or crashed state got Completed"):
        get_state_exception(Failed(data=Completed()))
    with pytest.raises(TypeError, match="cannot be resolved into an exception"):
        get_state_exception(Failed(data=5))
    with pytest.raises(FailedRun, match="t"):
        Failed(data="t").result()


def test_to_state_create_keeps_only_written_record_metadata(store: ResultStore) -> None:
    record = store.create_result_record(1)
    assert to_state_create(Completed(data=record)).data is None
    assert to_state_create(Completed(data=7)).data is None
    store.persist_result_record(record)
    payload = to_state_create(Completed(data=record, message="m"))
    assert payload.data == record.metadata and payload.message == "m" and payload.type.value == "COMPLETED"


def test_result_is_awaitable_in_an_async_flow_and_plain_in_a_sync_one() -> None:
    @flow
    async def in_async() -> tuple[str, int]:
        pending = Completed(data=3).result()
        return type(pending).__name__, await pending

    @flow
    def in_sync() -> int:
        return Completed(data=3).result()  # type: ignore[no-any-return]

    assert asyncio.run(in_async()) == ("coroutine", 3)
    assert in_sync() == 3


class Point(pydantic.BaseModel):
    x: int
    ident: uuid.UUID


@dataclasses.dataclass
class Pair:
    name: str
    raw: bytes


def test_json_results_hold_exceptions_models_and_dataclasses() -> None:
    serializer = JSONSerializer()
    point = Point(x=1, ident=uuid.uuid4())
    assert serializer.loads(serializer.dumps(point)) == point
    assert serializer.loads(serializer.dumps(Pair("a", b"t"))) == Pair("a", b"t")
    error = serializer.loads(serializer.dumps(ValueError("bar")))
    assert type(error) is ValueError and str(error) == "bar"
    assert serializer.dumps(ValueError("bar")) == b'{"__exc_type__": "builtins.ValueError", "message": "bar"}'


def test_json_results_written_before_still_read() -> None:
    # What flowbus's JSON wrote for tagged types before: read back unchanged.
    earlier = b'{"a":[{"__flowbus_type__":"uuid","v":"65b7fb11-9197-4e4b-b6d2-3510118bca21"},{"__flowbus_type__":"bytes","v":"eA=="}]}'
    assert JSONSerializer().loads(earlier) == {"a": [uuid.UUID("65b7fb11-9197-4e4b-b6d2-3510118bca21"), b"x"]}
    assert resolve_serializer("json").dumps({"u": uuid.UUID("65b7fb11-9197-4e4b-b6d2-3510118bca21")}) == (
        b'{"u":{"__flowbus_type__":"uuid","v":"65b7fb11-9197-4e4b-b6d2-3510118bca21"}}'
    )


def test_state_type_of_returned_state_is_unchanged(store: ResultStore) -> None:
    state: State[Any] = Cancelled()
    assert return_value_to_state_sync(state, store).is_cancelled()


def test_serializers_are_pydantic_models_as_prefects() -> None:
    from flowbus.serializers import CompressedSerializer, PickleSerializer, Serializer

    assert type(Serializer(type="json")) is JSONSerializer and type(Serializer(type="pickle")) is PickleSerializer
    compressed = Serializer(type="compressed/json")
    assert isinstance(compressed, CompressedSerializer) and isinstance(compressed.serializer, JSONSerializer)

    class Holder(pydantic.BaseModel):
        serializer: Serializer

    assert Holder(serializer={"type": "json", "jsonlib": "orjson"}).serializer == JSONSerializer(jsonlib="orjson")
    assert type(Holder(serializer=PickleSerializer()).serializer) is PickleSerializer
    for bad, where in (({"type": "nope"}, ("serializer", "type")), ({"type": "json", "extra": 1}, ("serializer", "extra"))):
        with pytest.raises(pydantic.ValidationError) as refused:
            Holder(serializer=bad)
        assert refused.value.errors()[0]["loc"] == where
    with pytest.raises(pydantic.ValidationError, match="extra"):
        JSONSerializer(extra=1)  # type: ignore[call-arg]
    with pytest.raises(pydantic.ValidationError, match="object_encoder"):
        JSONSerializer(dumps_kwargs={"default": "x"})
    with pytest.raises(pydantic.ValidationError, match="type"):
        Serializer(type="unknown-serializer-type")


def test_a_serializer_subclass_registers_its_type() -> None:
    from flowbus.serializers import Serializer, resolve_serializer

    class Upper(Serializer):
        type: str = "upper-text-compat-test"

        def dumps(self, value: Any) -> bytes:
            return str(value).upper().encode()

        def loads(self, data: bytes) -> Any:
            return data.decode()

    assert isinstance(Serializer(type="upper-text-compat-test"), Upper)
    assert isinstance(resolve_serializer("upper-text-compat-test"), Upper)
    with pytest.raises(pydantic.ValidationError):
        Upper(x=1)  # type: ignore[call-arg]


def test_import_flowbus_and_default_serializers_need_no_pydantic() -> None:
    import subprocess
    import sys

    code = (
        "import sys, flowbus; from flowbus.serializers import resolve_serializer;"
        "s = resolve_serializer('json'); assert s.loads(s.dumps({'a': 1})) == {'a': 1};"
        "print('pydantic' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "False"


def test_a_write_under_a_key_another_holder_locked_is_refused(tmp_path: Path) -> None:
    from flowbus.locking.memory import MemoryLockManager

    store = ResultStore(result_storage=tmp_path, lock_manager=MemoryLockManager())
    key = f"locked-{uuid.uuid4()}"
    assert store.acquire_lock(key, holder="holder1")
    with pytest.raises(RuntimeError, match=f"result record with key {key} because it is locked by another holder"):
        store.write(obj={"n": 1}, key=key, holder="holder2")
    assert not (tmp_path / key).exists()  # nothing written
    store.write(obj={"n": 1}, key=key, holder="holder1")
    assert (tmp_path / key).exists()
    assert store.read(key, holder="holder1").result == {"n": 1}


async def test_an_async_write_under_a_key_another_holder_locked_is_refused(tmp_path: Path) -> None:
    from flowbus.locking.memory import MemoryLockManager

    store = ResultStore(result_storage=tmp_path, lock_manager=MemoryLockManager())
    key = f"locked-{uuid.uuid4()}"
    assert store.acquire_lock(key, holder="holder1")
    with pytest.raises(RuntimeError, match="locked by another holder"):
        await store.awrite(obj={"n": 1}, key=key, holder="holder2")
    await store.awrite(obj={"n": 2}, key=key, holder="holder1")
    assert store.read(key, holder="holder1").result == {"n": 2}
