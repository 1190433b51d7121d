"""Blocks, variables and concurrency with no server: state under FLOWBUS_HOME."""

from __future__ import annotations

import datetime as dt
import os
import stat
from pathlib import Path

import pytest
from pydantic import SecretStr

from flowbus.blocks import Block, BlockAlreadyExists, BlockNotFound
from flowbus.blocks.system import JSON, DateTime, Secret, String
from flowbus.concurrency import ConcurrencySlotAcquisitionError
from flowbus.concurrency.sync import concurrency, rate_limit


class Warehouse(Block):
    host: str
    password: SecretStr


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FLOWBUS_HOME", str(tmp_path))
    monkeypatch.delenv("FLOWBUS_SECRETS_KEY", raising=False)
    return tmp_path


def test_secret_round_trips_and_is_sealed_on_disk(tmp_path: Path) -> None:
    Secret(value="hunter2").save("db")
    assert Secret.load("db").get() == "hunter2"
    assert "hunter2" not in repr(Secret.load("db"))
    files = list((tmp_path / "blocks").iterdir())
    assert files and all(b"hunter2" not in f.read_bytes() for f in files)
    key_file = tmp_path / "secrets.key"
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600


def test_user_blocks_keep_secret_fields_secret_and_load_by_slug() -> None:
    Warehouse(host="db.internal", password=SecretStr("s3cret")).save("prod")
    loaded = Warehouse.load("prod")
    assert loaded.host == "db.internal" and loaded.password.get_secret_value() == "s3cret"
    assert isinstance(Block.load("warehouse/prod"), Warehouse)
    assert Warehouse.secret_field_names() == ["password"]


def test_save_refuses_to_overwrite_unless_asked() -> None:
    String(value="a").save("region")
    with pytest.raises(BlockAlreadyExists, match="overwrite=True"):
        String(value="b").save("region")
    String(value="b").save("region", overwrite=True)
    assert String.load("region").value == "b"
    assert String.delete("region") and not String.delete("region")
    with pytest.raises(BlockNotFound):
        String.load("region")


def test_json_and_datetime_blocks() -> None:
    JSON(value={"a": [1, 2]}).save("cfg")
    when = dt.datetime(2026, 1, 2, 3, 4, tzinfo=dt.UTC)
    DateTime(value=when).save("cutoff")
    assert JSON.load("cfg").value == {"a": [1, 2]}
    assert DateTime.load("cutoff").value == when


@pytest.mark.parametrize("name", ["", "UPPER", "a/b", "../x", "x" * 101, "sp ace"])
def test_bad_block_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="invalid"):
        String(value="x").save(name)
    with pytest.raises((ValueError, BlockNotFound)):
        String.load(name)


def test_block_load_on_the_base_class_needs_a_known_type() -> None:
    with pytest.raises(BlockNotFound, match="<block type>/<name>"):
        Block.load("nothing")
    with pytest.raises(BlockNotFound):
        Block.load("no-such-type/x")


async def test_async_save_and_load() -> None:
    await Secret(value={"token": "t"}).asave("api")
    assert (await Secret.aload("api")).get() == {"token": "t"}


def test_concurrency_without_a_server_proceeds_unless_strict() -> None:
    entered = []
    with concurrency("db", occupy=1):
        entered.append(1)
    assert entered == [1]
    with pytest.raises(ConcurrencySlotAcquisitionError, match="need a server"), concurrency("db", strict=True):
        pass
    with pytest.raises(ConcurrencySlotAcquisitionError):
        rate_limit("api", strict=True)


@pytest.mark.parametrize("kwargs", [{"names": []}, {"names": ""}, {"names": "db", "occupy": 0},
                                    {"names": "db", "lease_duration": 0}])
def test_bad_concurrency_arguments_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError), concurrency(**kwargs):  # type: ignore[arg-type]
        pass


def test_a_variable_file_from_before_timestamps_is_read_and_overwritten(tmp_path: Path) -> None:
    from flowbus.variables import Variable

    (tmp_path / "variables").mkdir()
    (tmp_path / "variables" / "old.json").write_text('{"name": "old", "value": 1, "tags": []}')
    assert Variable.get("old") == 1
    Variable.set("old", 2, overwrite=True)
    assert Variable.get("old") == 2
