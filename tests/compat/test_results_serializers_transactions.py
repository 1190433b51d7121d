"""Result records, serializers, default storage, `AsyncTransaction`, the termination
signal and the sync state helpers, as Prefect 3.8.8 behaves (each expectation was run
on Prefect first; where flowbus differs on purpose, the test says so)."""

from __future__ import annotations

import asyncio
import json
import signal
import uuid
from pathlib import Path
from typing import Any

import pydantic
import pytest

from flowbus import flow, task
from flowbus._internal.states import (
    exception_to_crashed_state_sync,
    exception_to_failed_state_sync,
    return_value_to_state_sync,
)
from flowbus.exceptions import TerminationSignal
from flowbus.filesystems import LocalFileSystem, NullFileSystem, WritableFileSystem
from flowbus.results import (
    ResultRecord,
    ResultRecordMetadata,
    ResultStore,
    aget_default_result_storage,
    get_default_result_storage,
    get_result_store,
)
from flowbus.serializers import (
    CompressedJSONSerializer,
    CompressedSerializer,
    JSONSerializer,
    PickleSerializer,
    prefect_json_object_decoder,
    prefect_json_object_encoder,
    resolve_serializer,
)
from flowbus.settings import (
    PREFECT_LOCAL_STORAGE_PATH,
    temporary_settings,
)
from flowbus.states import Completed, Failed
from flowbus.testing.utilities import (
    assert_blocks_equal,
    assert_uses_result_serializer,
    assert_uses_result_storage,
    exceptions_equal,
)
from flowbus.transactions import AsyncTransaction, BaseTransaction, Transaction, TransactionState


class Item(pydantic.BaseModel):
    name: str
    id: uuid.UUID


def test_a_result_record_round_trips_with_its_metadata() -> None:
    record = ResultRecord(result={"rows": [1, 2]}, metadata=ResultRecordMetadata(serializer="json", storage_key="k"))
    again = ResultRecord.deserialize(record.serialize())
    assert again.result == {"rows": [1, 2]} and again == record
    assert again.metadata.storage_key == "k" and again.serializer.name == "json"
    split = ResultRecord.deserialize_from_result_and_metadata(record.serialize_result(), record.serialize_metadata())
    assert split.result == {"rows": [1, 2]}
    assert ResultRecordMetadata.load_bytes(record.metadata.dump_bytes()) == record.metadata
    assert ResultRecordMetadata().serializer.name == "cloudpickle", "Prefect's default: pickle"


def test_result_record_reads_other_bytes_with_a_backup_serializer_only() -> None:
    plain = JSONSerializer().dumps([1, 2])
    assert ResultRecord.deserialize(plain, backup_serializer=JSONSerializer()).result == [1, 2]
    with pytest.raises(pydantic.ValidationError):
        ResultRecord.deserialize(plain)


def test_a_completed_state_holding_a_record_gives_the_records_value() -> None:
    record = ResultRecord(result="test", metadata=ResultRecordMetadata(serializer=JSONSerializer(), storage_key="t"))
    assert Completed(data=record).result() == "test"
    assert not record.is_persisted
    record.mark_persisted()
    assert record.is_persisted


@pytest.mark.parametrize("lib", ["lzma", "zlib", "bz2"])
def test_compressed_serializer_round_trips(lib: str) -> None:
    serializer = CompressedSerializer(serializer="json", compressionlib=lib)
    data = serializer.dumps({"a": "x" * 1000})
    assert len(data) < 1000
    assert serializer.loads(data) == {"a": "x" * 1000}
    assert resolve_serializer(serializer.name).loads(data) == {"a": "x" * 1000}, "stored records name it"


def test_compressed_shorthands_and_bad_libraries() -> None:
    assert isinstance(resolve_serializer("compressed/json"), CompressedSerializer)
    assert isinstance(resolve_serializer("compressed/pickle").serializer, PickleSerializer)  # type: ignore[attr-defined]
    assert isinstance(CompressedJSONSerializer().serializer, JSONSerializer)
    with pytest.raises(ValueError, match="compress and decompress"):
        CompressedSerializer(serializer="json", compressionlib="json")
    with pytest.raises(ValueError, match="Unknown result_serializer"):
        resolve_serializer("compressed/nope")


def test_a_task_result_is_stored_compressed(tmp_path: Path) -> None:
    @task(persist_result=True, result_serializer="compressed/json", result_storage=str(tmp_path),
          result_storage_key="out")  # fmt: skip
    def make() -> dict[str, str]:
        return {"text": "y" * 500}

    @flow
    def pipeline() -> dict[str, str]:
        return make()

    assert pipeline() == {"text": "y" * 500}
    stored = (tmp_path / "out").read_bytes()
    assert len(stored) < 500 and resolve_serializer("compressed/json").loads(stored) == {"text": "y" * 500}


def test_prefect_json_object_hooks_round_trip_models_and_exceptions() -> None:
    item = Item(name="a", id=uuid.UUID(int=1))
    text = json.dumps({"item": item, "error": ValueError("boom")}, default=prefect_json_object_encoder)
    assert json.loads(text)["error"] == {"__exc_type__": "builtins.ValueError", "message": "boom"}
    back = json.loads(text, object_hook=prefect_json_object_decoder)
    assert back["item"] == item and exceptions_equal(back["error"], ValueError("boom"))


def test_prefect_json_object_decoder_refuses_what_is_not_an_exception_class() -> None:
    with pytest.raises(ValueError, match="Invalid exception type"):
        prefect_json_object_decoder({"__exc_type__": "builtins.int", "message": "1"})
    with pytest.raises(ValueError, match="Invalid exception type"):
        prefect_json_object_decoder({"__exc_type__": "no_such.Error", "message": "1"})
    assert prefect_json_object_decoder({"__class__": "no_such.Class", "data": 1}) == {"__class__": "no_such.Class", "data": 1}


def test_json_serializer_options() -> None:
    orjson = JSONSerializer(jsonlib="orjson", object_encoder=None, object_decoder=None)
    assert orjson.loads(orjson.dumps({"a": [1]})) == {"a": [1]}
    hooked = JSONSerializer(object_encoder="flowbus.serializers.prefect_json_object_encoder",
                            object_decoder="flowbus.serializers.prefect_json_object_decoder")  # fmt: skip
    assert exceptions_equal(hooked.loads(hooked.dumps(ValueError("v"))), ValueError("v"))
    assert JSONSerializer(dumps_kwargs={"sort_keys": True}).dumps({"b": 1, "a": 2}) == b'{"a": 2, "b": 1}'
    with pytest.raises(ValueError, match="object_encoder"):
        JSONSerializer(dumps_kwargs={"default": str})
    with pytest.raises(ValueError, match="object_decoder"):
        JSONSerializer(loads_kwargs={"object_hook": dict})
    default = JSONSerializer()
    assert default.loads(default.dumps({"when": {1, 2}})) == {"when": {1, 2}}
    assert default.dumps({1, 2}) == b'{"__class__": "builtins.set", "data": [1, 2]}', "Prefect's shape"


def test_pickle_serializer_picklelib() -> None:
    plain = PickleSerializer(picklelib="pickle")
    assert plain.loads(plain.dumps({"a": 1})) == {"a": 1}
    with pytest.raises(ValueError, match="import path"):
        PickleSerializer(picklelib=json)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="does not have a 'dumps' method"):
        PickleSerializer(picklelib="uuid")


def test_local_storage_path_moves_the_default_result_storage(tmp_path: Path) -> None:
    @task(persist_result=True, result_storage_key="answer")
    def answer() -> int:
        return 42

    @flow
    def pipeline() -> int:
        return answer()

    with temporary_settings({PREFECT_LOCAL_STORAGE_PATH: tmp_path / "storage"}):
        assert pipeline() == 42
        assert get_default_result_storage().read("answer") is not None
        assert asyncio.run(aget_default_result_storage()).read("answer") is not None
    assert (tmp_path / "storage" / "answer").is_file()


def test_null_file_system_keeps_nothing() -> None:
    null = NullFileSystem()
    null.write_path("a", b"x")
    null.write("a", b"x")
    assert null.read_path("a") is None and null.read("a") is None
    assert isinstance(null, WritableFileSystem) and isinstance(LocalFileSystem(), WritableFileSystem)
    assert null == NullFileSystem()


def test_transactions_take_their_state() -> None:
    for state in TransactionState:
        txn = Transaction(state=state)
        assert txn.is_committed() == (state is TransactionState.COMMITTED)
        assert txn.is_active() == (state is TransactionState.ACTIVE)
    with pytest.raises(ValueError, match="state 'nope' is not one of"):
        Transaction(state="nope")


def test_async_transaction_commits_reads_and_rolls_back(tmp_path: Path) -> None:
    hooks: list[str] = []

    async def run() -> tuple[Any, Any, Any]:
        async with AsyncTransaction(key="k", store=str(tmp_path)) as txn:
            txn.stage({"v": 1}, on_commit_hooks=[lambda t: hooks.append("commit")])
        record = await txn.read()
        async with AsyncTransaction(store=str(tmp_path)) as outer:
            async with AsyncTransaction(store=str(tmp_path)) as inner:
                inner.stage(1, on_rollback_hooks=[lambda t: hooks.append("rollback")])
            await outer.rollback()
        return txn.state, record, inner.state

    state, record, inner_state = asyncio.run(run())
    assert state is TransactionState.COMMITTED and record is not None and record.result == {"v": 1}
    assert inner_state is TransactionState.ROLLED_BACK
    assert hooks == ["commit", "rollback"]
    assert isinstance(AsyncTransaction(), BaseTransaction)


def test_async_transaction_refuses_plain_with() -> None:
    with pytest.raises(NotImplementedError, match="Use the `async with` statement instead"):
        with AsyncTransaction():
            pass


def test_termination_signal_is_not_an_exception_and_crashes_the_state() -> None:
    exc = TerminationSignal(signal=signal.SIGTERM)
    assert not isinstance(exc, Exception) and exc.signal == signal.SIGTERM
    state = exception_to_crashed_state_sync(exc)
    assert state.is_crashed() and state.message == "Execution was aborted by a termination signal."


def test_sync_state_helpers() -> None:
    try:
        raise RuntimeError("active error")
    except RuntimeError:
        failed = exception_to_failed_state_sync(message="While working:")
    assert failed.is_failed() and failed.message == "While working: RuntimeError: active error"
    with pytest.raises(ValueError, match="no active exception"):
        exception_to_failed_state_sync()
    store = ResultStore()
    assert return_value_to_state_sync(5, store).result() == 5
    built = Failed(message="x")
    assert return_value_to_state_sync(built, store) is built


def test_a_serializer_subclass_with_a_type_is_usable_by_name(tmp_path: Path) -> None:
    from flowbus.serializers import Serializer

    class IntBytes(Serializer):
        type = "int-bytes-compat-test"

        def dumps(self, value: int) -> bytes:
            return value.to_bytes(8, "little")

        def loads(self, data: bytes) -> int:
            return int.from_bytes(data, "little")

    assert IntBytes().name == "int-bytes-compat-test"
    assert isinstance(resolve_serializer("int-bytes-compat-test"), IntBytes)
    assert CompressedSerializer(serializer=IntBytes()).name == "compressed/int-bytes-compat-test"

    @flow(persist_result=True, result_serializer="int-bytes-compat-test", result_storage=str(tmp_path),
          cache_result_in_memory=False)  # fmt: skip
    def seven() -> int:
        return 7

    state = seven(return_state=True)
    assert state.result() == 7
    asyncio.run(assert_uses_result_serializer(state, "int-bytes-compat-test"))
    asyncio.run(assert_uses_result_storage(state, str(tmp_path)))
    with pytest.raises(AssertionError, match="serializer 'int-bytes-compat-test', expected 'json'"):
        asyncio.run(assert_uses_result_serializer(state, "json"))
    with pytest.raises(AssertionError, match="is not stored in"):
        asyncio.run(assert_uses_result_storage(state, str(tmp_path / "elsewhere")))


def test_get_result_store_follows_the_running_task_and_flow(tmp_path: Path) -> None:
    def described(store: ResultStore) -> tuple[str, Any]:
        storage = store.result_storage
        where = getattr(storage, "root", storage)  # a directory store: its directory
        return store.serializer.name, None if where is None else str(where)

    @task(result_serializer="cloudpickle", result_storage=str(tmp_path))
    def inner() -> tuple[str, Any]:
        return described(get_result_store())

    @flow(result_serializer="compressed/json")
    def outer() -> tuple[tuple[str, Any], tuple[str, Any]]:
        return described(get_result_store()), inner()

    in_flow, in_task = outer()
    # In a flow naming no storage, the store is the default storage resolved, as
    # Prefect's (the default storage block, or flowbus's local result directory).
    assert tuple(in_flow) == ("compressed/json", described(ResultStore(result_storage=get_default_result_storage()))[1])
    assert tuple(in_task) == ("cloudpickle", str(tmp_path))
    assert described(get_result_store()) == ("json", None), "outside a run: flowbus's defaults"


def test_assert_blocks_equal_compares_type_and_settings(tmp_path: Path) -> None:
    assert_blocks_equal(LocalFileSystem(tmp_path), LocalFileSystem(tmp_path))
    with pytest.raises(AssertionError):
        assert_blocks_equal(LocalFileSystem(tmp_path), LocalFileSystem(tmp_path / "x"))
    with pytest.raises(AssertionError, match="Unexpected type"):
        assert_blocks_equal(NullFileSystem(), LocalFileSystem(tmp_path))


def test_a_flow_run_input_loads_as_a_typed_run_input() -> None:
    from flowbus.client.schemas.objects import FlowRunInput
    from flowbus.input import RunInput

    class Person(RunInput):
        name: str
        human: bool

    stored = FlowRunInput(flow_run_id=uuid.UUID(int=7), key="person-response",
                          value=json.dumps({"name": "Bob", "human": True}), sender="flowbus.flow-run.x")  # fmt: skip
    assert stored.flow_run_id == str(uuid.UUID(int=7)) and stored.decoded_value == {"name": "Bob", "human": True}
    person = Person.load_from_flow_run_input(stored)
    assert person.name == "Bob" and person.human is True
    assert person.metadata.sender == "flowbus.flow-run.x"
    with pytest.raises(pydantic.ValidationError, match="lowercase letters, numbers, and dashes"):
        FlowRunInput(flow_run_id="r", key="Bad Key", value="1")


def test_the_local_storage_path_is_a_known_setting(tmp_path: Path) -> None:
    from events.errors import SettingsError
    from events.settings import check_environment

    check_environment({"FLOWBUS_LOCAL_STORAGE_PATH": str(tmp_path)})  # the command line refuses unknown ones
    with pytest.raises(SettingsError, match="FLOWBUS_LOCAL_STORAGE_PAHT"):
        check_environment({"FLOWBUS_LOCAL_STORAGE_PAHT": str(tmp_path)})
