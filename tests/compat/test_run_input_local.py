"""Run input with no server, as Prefect 3.8.8 keeps it for a local flow run (there in its
ephemeral API server; here in files under ``FLOWBUS_HOME``). Checked on Prefect first."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from events.errors import AlreadyExists
from flowbus import flow
from flowbus.input import RunInput, keyset_from_base_key
from flowbus.input.actions import (
    acreate_flow_run_input,
    adelete_flow_run_input,
    afilter_flow_run_input,
    aread_flow_run_input,
    create_flow_run_input,
    delete_flow_run_input,
    filter_flow_run_input,
    read_flow_run_input,
)


class Person(RunInput):
    name: str
    email: str
    human: bool


BOB = {"name": "Bob", "email": "bob@bob.bob", "human": True}


def test_save_and_load_in_a_sync_flow() -> None:
    @flow
    def local_flow() -> tuple[Any, Any]:
        keyset = keyset_from_base_key("person")
        Person.save(keyset)
        create_flow_run_input(keyset["response"], value=BOB)
        return read_flow_run_input(key=keyset["schema"]), Person.load(keyset)

    schema, person = local_flow()
    assert set(schema["properties"]) == {"name", "email", "human"}
    assert isinstance(person, Person) and person.model_dump() == BOB


async def test_save_and_load_in_an_async_flow() -> None:
    @flow
    async def local_flow() -> tuple[Any, Any]:
        keyset = keyset_from_base_key("person")
        await Person.save(keyset)
        await create_flow_run_input(keyset["response"], value=BOB)  # type: ignore[misc]  # dual
        return await read_flow_run_input(key=keyset["schema"]), await Person.load(keyset)

    schema, person = await local_flow()
    assert schema["title"] == "Person" and person.name == "Bob"


def test_inputs_belong_to_their_flow_run_and_a_key_is_created_once() -> None:
    other = str(uuid.uuid4())
    create_flow_run_input("note", {"n": 1}, flow_run_id=other)
    create_flow_run_input("note-2", {"n": 2}, flow_run_id=other, sender="someone")
    with pytest.raises(AlreadyExists, match="note"):
        create_flow_run_input("note", {"n": 3}, flow_run_id=other)

    @flow
    def reader() -> Any:
        return read_flow_run_input("note"), read_flow_run_input("note", flow_run_id=other)

    assert reader() == (None, {"n": 1})
    listed = filter_flow_run_input("note", limit=5, exclude_keys={"note"}, flow_run_id=other)
    assert [(s.key, s.value, s.sender) for s in listed] == [("note-2", {"n": 2}, "someone")]
    delete_flow_run_input("note", flow_run_id=other)
    assert read_flow_run_input("note", flow_run_id=other) is None
    assert [s.key for s in filter_flow_run_input("note", limit=5, flow_run_id=other)] == ["note-2"]


async def test_async_actions_with_an_explicit_run() -> None:
    run = str(uuid.uuid4())
    await acreate_flow_run_input("a", 1, flow_run_id=run)
    await create_flow_run_input("b", 2, flow_run_id=run)  # type: ignore[misc]  # dual
    assert [s.value for s in await afilter_flow_run_input("", limit=2, flow_run_id=run)] == [1, 2]
    await adelete_flow_run_input("a", flow_run_id=run)
    assert await aread_flow_run_input("a", flow_run_id=run) is None


def test_bad_keys_and_runs_are_refused() -> None:
    with pytest.raises(ValueError):
        create_flow_run_input("bad key with spaces/..", 1, flow_run_id=str(uuid.uuid4()))
    with pytest.raises(ValueError):
        read_flow_run_input("k", flow_run_id="../../etc")
    with pytest.raises(RuntimeError, match="not inside a flow run"):
        read_flow_run_input("k")
