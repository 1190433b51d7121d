"""Run input as Prefect 3.8.8 has it, for what needs no server (each expectation was run
on Prefect first): ``with_initial_data`` keeps the declared annotations, and ``respond``
refuses an input no flow run sent, awaited in async code and called plainly in sync code."""

from __future__ import annotations

import json
import re
import uuid
from typing import Union

import pydantic
import pytest

from flowbus.client.schemas.objects import FlowRunInput
from flowbus.input import RunInput


class Form(RunInput):
    name: Union[str, None] = None  # noqa: UP007  (the spelling Prefect's users write)
    age: int | None = None


class Place(RunInput):
    city: str


def test_with_initial_data_keeps_optional_annotations() -> None:
    prefilled = Form.with_initial_data(name="Alice", age=30)
    assert prefilled.model_fields["name"].annotation == Union[str, None]  # noqa: UP007
    assert prefilled.model_fields["age"].annotation == int | None
    assert (prefilled().name, prefilled().age) == ("Alice", 30)
    cleared = prefilled(name=None, age=None)
    assert (cleared.name, cleared.age) == (None, None)


def test_with_initial_data_infers_an_undeclared_fields_type() -> None:
    class Loose(RunInput):
        model_config = pydantic.ConfigDict(extra="allow")

    prefilled = Loose.with_initial_data(count=3)
    assert prefilled.model_fields["count"].annotation is int
    assert prefilled().count == 3  # type: ignore[attr-defined]


def _unsent() -> Form:
    stored = FlowRunInput(flow_run_id=uuid.uuid4(), key="form-response",
                          value=json.dumps({"name": "Bob"}), sender=None)  # fmt: skip
    return Form.load_from_flow_run_input(stored)  # type: ignore[no-any-return]


def test_respond_refuses_an_input_no_flow_run_sent() -> None:
    with pytest.raises(RuntimeError, match=re.escape("Cannot respond to an input that was not sent by a flow run.")):
        _unsent().respond(Place(city="Oslo"))


async def test_respond_is_awaited_in_async_code() -> None:
    pending = _unsent().respond(Place(city="Oslo"))
    with pytest.raises(RuntimeError, match="Cannot respond"):
        await pending
