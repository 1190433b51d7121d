"""File systems as saved blocks and as result storage by slug, as in Prefect 3.8.8
(each expectation was run on Prefect first): ``save`` / ``load`` / ``_save``, the
``local-file-system/<name>`` slug, the default-storage-block setting, and what a result
record's metadata says; sync and async, and across processes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from flowbus import flow, task
from flowbus.blocks import Block, BlockAlreadyExists, BlockNotFound
from flowbus.context import get_run_context
from flowbus.filesystems import LocalFileSystem, RemoteFileSystem
from flowbus.results import ResultStore, get_default_result_storage
from flowbus.settings import (
    PREFECT_DEFAULT_RESULT_STORAGE_BLOCK,
    PREFECT_TASK_SCHEDULING_DEFAULT_STORAGE_BLOCK,
    temporary_settings,
)


def _name() -> str:
    return f"results-{uuid.uuid4()}"


def test_save_load_and_overwrite_keep_the_document_id(tmp_path: Path) -> None:
    block = LocalFileSystem(basepath=tmp_path)
    assert block._block_document_id is None and block._is_anonymous is None
    name = _name()
    block_id = block.save(name)
    assert isinstance(block_id, uuid.UUID)
    assert (block._block_document_id, block._block_document_name, block._is_anonymous) == (block_id, name, False)
    with pytest.raises(BlockAlreadyExists, match="already in use for this block type"):
        LocalFileSystem(basepath=tmp_path / "other").save(name)
    assert LocalFileSystem(basepath=tmp_path / "other").save(name, overwrite=True) == block_id
    loaded = LocalFileSystem.load(name)
    assert loaded.basepath == str(tmp_path / "other")
    assert (loaded._block_document_id, loaded._block_document_name, loaded._is_anonymous) == (block_id, name, False)
    assert isinstance(Block.load(f"local-file-system/{name}"), LocalFileSystem)
    assert LocalFileSystem.get_block_type_slug() == "local-file-system"
    assert RemoteFileSystem.get_block_type_slug() == "remote-file-system"
    with pytest.raises(BlockNotFound, match="Unable to find block document named nope for block type local-file-system"):
        LocalFileSystem.load("nope")
    with pytest.raises(ValueError, match="invalid"):
        block.save("Bad Name")


def test_anonymous_save_and_class_level_delete(tmp_path: Path) -> None:
    block = LocalFileSystem(basepath=tmp_path)
    with pytest.raises(ValueError, match="without a name"):
        block._save()
    block_id = block._save(is_anonymous=True)
    assert block._is_anonymous is True and block._block_document_id == block_id
    assert block._block_document_name is not None and block._block_document_name.startswith("anonymous-")
    # On the class, delete removes a saved block; on an instance, a stored key.
    block.write("k", b"1")
    block.delete("k")
    assert block.read("k") is None
    assert LocalFileSystem.delete(block._block_document_name) is True
    with pytest.raises(BlockNotFound):
        LocalFileSystem.load(block._block_document_name)


def test_remote_file_system_saves_its_settings() -> None:
    name = _name()
    RemoteFileSystem(basepath="memory://flowbus-blocks/", settings={"skip_instance_cache": True}).save(name)
    loaded = RemoteFileSystem.load(name)
    assert loaded.basepath == "memory://flowbus-blocks" and loaded.settings == {"skip_instance_cache": True}
    loaded.write("a/b", b"x")
    assert RemoteFileSystem.load(name).read("a/b") == b"x"


async def test_save_load_and_read_path_are_awaitable_in_async_code(tmp_path: Path) -> None:
    name = _name()
    block_id = await LocalFileSystem(basepath=tmp_path).save(name)
    loaded = await LocalFileSystem.load(name)
    assert loaded._block_document_id == block_id
    written = await loaded.write_path("x.bin", b"payload")
    assert written == str(tmp_path / "x.bin")
    assert await loaded.read_path("x.bin") == b"payload"
    assert await loaded.read_path(str(tmp_path / "x.bin")) == b"payload"  # absolute, inside basepath
    with pytest.raises(ValueError, match="outside the file system's basepath"):
        await loaded.read_path("/etc/hostname")
    assert loaded.read_path("x.bin", _sync=True) == b"payload"


def test_result_storage_by_slug_writes_there_and_the_record_names_the_block(tmp_path: Path) -> None:
    name = _name()
    block_id = LocalFileSystem(basepath=tmp_path).save(name)

    @task(persist_result=True, result_storage=f"local-file-system/{name}", result_storage_key="answer.json")
    def answer() -> int:
        return 42

    @flow
    def pipeline() -> int:
        return answer()

    assert pipeline() == 42
    assert (tmp_path / "answer.json").is_file()
    record = ResultStore(result_storage=f"local-file-system/{name}").create_result_record(7, key="seven")
    assert record.metadata.storage_key == "seven"  # a saved block keeps the key relative
    assert record.metadata.storage_block_id == block_id
    unsaved = ResultStore(result_storage=LocalFileSystem(basepath=tmp_path)).create_result_record(7, key="seven")
    assert unsaved.metadata.storage_key == str((tmp_path / "seven").resolve())
    assert unsaved.metadata.storage_block_id is None


def test_default_storage_block_setting_is_where_results_go(tmp_path: Path) -> None:
    name = _name()
    LocalFileSystem(basepath=tmp_path).save(name)

    @task(persist_result=True, result_storage_key="task-result")
    def step() -> str:
        return "stored"

    @flow
    def pipeline() -> str:
        storage = get_run_context().result_store.result_storage
        assert isinstance(storage, LocalFileSystem) and storage._block_document_name == name
        return step()

    with temporary_settings({PREFECT_DEFAULT_RESULT_STORAGE_BLOCK: f"local-file-system/{name}"}):
        default = get_default_result_storage()
        assert isinstance(default, LocalFileSystem) and default.basepath == str(tmp_path)
        assert pipeline() == "stored"
    assert (tmp_path / "task-result").is_file()
    assert PREFECT_DEFAULT_RESULT_STORAGE_BLOCK.value() is None


async def test_explicit_result_storage_wins_over_the_default_block(tmp_path: Path) -> None:
    explicit, default = _name(), _name()
    await LocalFileSystem(basepath=tmp_path / "explicit").save(explicit)
    await LocalFileSystem(basepath=tmp_path / "default").save(default)

    @flow(result_storage=await LocalFileSystem.load(explicit))
    async def pipeline() -> str | None:
        return get_run_context().result_store.result_storage.basepath  # type: ignore[no-any-return]

    with temporary_settings({PREFECT_DEFAULT_RESULT_STORAGE_BLOCK: f"local-file-system/{default}"}):
        assert await pipeline() == str(tmp_path / "explicit")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("local-file-system/missing-block", "Unable to find block document named missing-block"),
        ("no-such-type/my-results", "Unable to find block document named my-results for block type no-such-type"),
        ("garbage", "must name a saved storage block as '<block type>/<name>'"),
    ],
)
def test_a_default_block_that_cannot_be_loaded_fails_the_run_that_needs_it(value: str, message: str) -> None:
    @flow
    def pipeline() -> object:
        return get_run_context().result_store.result_storage

    with temporary_settings({PREFECT_DEFAULT_RESULT_STORAGE_BLOCK: value}):
        with pytest.raises(ValueError, match=message):
            pipeline()
        with pytest.raises(ValueError, match=message):
            get_default_result_storage()


def test_task_scheduling_storage_block_setting_is_accepted_and_read() -> None:
    with temporary_settings({PREFECT_TASK_SCHEDULING_DEFAULT_STORAGE_BLOCK: "local-file-system/jobs"}):
        assert PREFECT_TASK_SCHEDULING_DEFAULT_STORAGE_BLOCK.value() == "local-file-system/jobs"
    assert PREFECT_TASK_SCHEDULING_DEFAULT_STORAGE_BLOCK.value() is None


_CHILD = textwrap.dedent(
    """
    import sys
    from flowbus import flow, task
    from flowbus.filesystems import LocalFileSystem

    name = sys.argv[1]

    @task(persist_result=True, result_storage=f"local-file-system/{name}", result_storage_key="from-child")
    def produce() -> str:
        return "made in the child"

    @flow
    def pipeline() -> str:
        return produce()

    assert pipeline() == "made in the child"
    print(LocalFileSystem.load(name).basepath)
    """
)


def test_a_block_saved_here_is_result_storage_in_another_process(tmp_path: Path, flowbus_home: Path) -> None:
    name = _name()
    LocalFileSystem(basepath=tmp_path / "shared").save(name)
    env = {**os.environ, "FLOWBUS_HOME": str(flowbus_home)}
    done = subprocess.run([sys.executable, "-c", _CHILD, name], env=env, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(tmp_path / "shared")
    assert (tmp_path / "shared" / "from-child").is_file()
    # And the value the child stored reads back here through the same block.
    assert LocalFileSystem.load(name).read("from-child") == b'"made in the child"'


def test_a_transaction_reads_a_key_after_the_serializable_writer_holding_it(tmp_path: Path) -> None:
    import threading
    import time

    from flowbus.locking.memory import MemoryLockManager
    from flowbus.transactions import IsolationLevel, transaction

    store = ResultStore(result_storage=LocalFileSystem(basepath=tmp_path), lock_manager=MemoryLockManager())
    opened = threading.Event()

    def write() -> None:
        with transaction(key="contended", store=store, isolation_level=IsolationLevel.SERIALIZABLE) as txn:
            opened.set()
            time.sleep(0.3)  # the reader asks while the lock is held
            txn.stage({"foo": "bar"})

    writer = threading.Thread(target=write)
    writer.start()
    try:
        assert opened.wait(60)
        with transaction(key="contended", store=store) as txn:
            record = txn.read()
        assert record is not None and record.result == {"foo": "bar"}
    finally:
        writer.join(60)
