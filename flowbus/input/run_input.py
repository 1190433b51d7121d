"""Typed flow-run input (Prefect's ``prefect.input.run_input``).

A :class:`RunInput` is a pydantic model a paused run waits for
(``pause_flow_run(wait_for_input=MyInput)``) or that flows send each other
(:func:`send_input`, :func:`receive_input`). Any other type (``int``, a plain
pydantic model) is wrapped in an :class:`AutomaticRunInput` with one ``value`` field.

Example::

    from flowbus.input import RunInput

    class Approval(RunInput):
        approved: bool
        note: str = ""

    approval = pause_flow_run(wait_for_input=Approval.with_initial_data(approved=False))
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any, ClassVar, Generic, TypeVar, cast

import pydantic

from events.pauses import keyset_for
from events.pauses import keyset_from_base_key as keyset_from_base_key
from flowbus._dual import _DualClassMethod, dual, dual_classmethod
from flowbus.input import actions

T = TypeVar("T")
R = TypeVar("R", bound="RunInput")
Keyset = dict[str, str]


def keyset_from_paused_state(state: Any) -> Keyset:
    """The run-input keys of a Paused/Suspended state (by its name and pause key)."""
    if not state.is_paused():
        raise RuntimeError(f"{state.type.value!r} is unsupported.")
    return keyset_for(state.name or "", str(state.state_details.pause_key))


class RunInputMetadata(pydantic.BaseModel):
    key: str
    sender: str | None = None
    receiver: str


class RunInput(pydantic.BaseModel):
    """A model of flow-run input; unknown fields are refused."""

    model_config = pydantic.ConfigDict(extra="forbid", ignored_types=(_DualClassMethod,))

    _description: ClassVar[str | None] = None
    _metadata: RunInputMetadata | None = pydantic.PrivateAttr(default=None)

    @property
    def metadata(self) -> RunInputMetadata:
        if self._metadata is None:
            raise RuntimeError("this input was not loaded from a flow run")
        return self._metadata

    @classmethod
    def keyset_from_type(cls) -> Keyset:
        return keyset_from_base_key(cls.__name__.lower())

    @classmethod
    async def asave(cls, keyset: Keyset, flow_run_id: str | uuid.UUID | None = None) -> None:
        """Store this type's JSON schema (and description) under ``keyset``."""
        await actions.acreate_flow_run_input(keyset["schema"], cls.model_json_schema(), flow_run_id)
        if isinstance(cls._description, str):
            await actions.acreate_flow_run_input(keyset["description"], cls._description, flow_run_id)

    @dual_classmethod("asave")
    def save(cls, keyset: Keyset, flow_run_id: str | uuid.UUID | None = None) -> None:
        """Store this type's JSON schema (and description) under ``keyset``."""
        actions.create_sync(keyset["schema"], cls.model_json_schema(), flow_run_id)
        if isinstance(cls._description, str):
            actions.create_sync(keyset["description"], cls._description, flow_run_id)

    @classmethod
    def _loaded(cls, value: Any, key: str, flow_run_id: str, sender: str | None = None) -> Any:
        instance = cls(**value) if isinstance(value, dict) else cls()
        instance._metadata = RunInputMetadata(key=key, sender=sender, receiver=flow_run_id)
        return instance

    @classmethod
    def _result(cls, instance: Any) -> Any:
        return instance

    @classmethod
    async def aload(cls, keyset: Keyset, flow_run_id: str | uuid.UUID | None = None) -> Any:
        run_id = actions.current_flow_run_id(flow_run_id)
        return cls._result(cls._loaded(await actions.aread_flow_run_input(keyset["response"], run_id),
                                       keyset["response"], run_id))

    @dual_classmethod("aload")
    def load(cls, keyset: Keyset, flow_run_id: str | uuid.UUID | None = None) -> Any:
        """The response stored under ``keyset``, validated as this type (an automatic
        input gives its ``value``)."""
        run_id = actions.current_flow_run_id(flow_run_id)
        return cls._result(cls._loaded(actions.read_sync(keyset["response"], run_id),
                                       keyset["response"], run_id))

    @classmethod
    def load_from_flow_run_input(cls, stored: Any, flow_run_id: str | None = None) -> Any:
        """An instance from a stored input (``events.run_input.StoredInput``), or from a
        client's `FlowRunInput` (its JSON value and its own flow run id)."""
        from flowbus.client.schemas.objects import FlowRunInput

        if isinstance(stored, FlowRunInput):
            return cls._loaded(stored.decoded_value, stored.key, flow_run_id or stored.flow_run_id, stored.sender)
        if flow_run_id is None:
            raise TypeError("load_from_flow_run_input of a stored input needs its flow_run_id")
        return cls._loaded(stored.value, stored.key, flow_run_id, stored.sender)

    @classmethod
    def with_initial_data(cls: type[R], description: str | None = None, **kwargs: Any) -> type[R]:
        """A subclass whose fields default to ``kwargs`` (the form's initial values)."""
        # A field the class declares keeps its annotation (``str | None`` stays optional).
        fields: dict[str, Any] = {}
        for key, value in kwargs.items():
            declared = cls.model_fields.get(key)
            fields[key] = (declared.annotation if declared is not None else type(value), value)
        model = cast(type[R], pydantic.create_model(cls.__name__, __base__=cls, **fields))
        if description is not None:
            model._description = description
        return model

    async def arespond(self, run_input: RunInput, sender: str | None = None,
                       key_prefix: str | None = None) -> None:
        sender_id = self._sender_run_id()
        await run_input.asend_to(sender_id, sender=sender, key_prefix=key_prefix)

    @dual(arespond)
    def respond(self, run_input: RunInput, sender: str | None = None,
                key_prefix: str | None = None) -> None:
        """Send ``run_input`` back to the flow run that sent this input (awaitable in
        async code, like Prefect's)."""
        _send_sync(run_input, self._sender_run_id(), sender, key_prefix)

    def _sender_run_id(self) -> str:
        sender = self.metadata.sender
        if not sender or not sender.startswith("flowbus.flow-run."):
            raise RuntimeError("Cannot respond to an input that was not sent by a flow run.")
        return sender.removeprefix("flowbus.flow-run.")

    async def asend_to(self, flow_run_id: str | uuid.UUID, sender: str | None = None,
                       key_prefix: str | None = None) -> None:
        await asend_input(self, flow_run_id, sender=sender, key_prefix=key_prefix)

    @dual(asend_to)
    def send_to(self, flow_run_id: str | uuid.UUID, sender: str | None = None,
                key_prefix: str | None = None) -> None:
        """Send this input to the flow run ``flow_run_id`` (awaitable in async code)."""
        _send_sync(self, flow_run_id, sender, key_prefix)

    @classmethod
    def receive(cls, timeout: float | None = 3600, poll_interval: float = 10,
                raise_timeout_error: bool = False, exclude_keys: set[str] | None = None,
                key_prefix: str | None = None, flow_run_id: str | uuid.UUID | None = None,
                with_metadata: bool = False) -> GetInputHandler[Any]:
        """Iterate over inputs of this type sent to the flow run (see :func:`receive_input`)."""
        return GetInputHandler(cls, key_prefix or f"{cls.__name__.lower()}-auto", timeout,
                               poll_interval, raise_timeout_error, exclude_keys, flow_run_id,
                               with_metadata)

    @classmethod
    def subclass_from_base_model_type(cls, model_cls: type[pydantic.BaseModel]) -> type[RunInput]:
        """A RunInput with the fields of a plain pydantic model."""
        return cast(type[RunInput], type(model_cls.__name__, (model_cls, cls), {}))


class AutomaticRunInput(RunInput, Generic[T]):
    """Input of any other type, as one ``value`` field."""

    value: T

    @classmethod
    def _result(cls, instance: Any) -> Any:
        return instance.value

    @classmethod
    def subclass_from_type(cls, _type: Any) -> type[AutomaticRunInput[Any]]:
        """``<type>AutomaticRunInput`` with a ``value`` field of ``_type`` (Prefect's name)."""
        prefix = str(getattr(_type, "__name__", getattr(_type, "_name", "")) or "").lower()
        return cast(type[AutomaticRunInput[Any]], pydantic.create_model(
            f"{prefix}AutomaticRunInput", __base__=AutomaticRunInput, value=(_type, ...)))


def run_input_subclass_from_type(_type: Any) -> type[RunInput]:
    """The RunInput class for ``_type``: itself, a RunInput of a pydantic model, or automatic."""
    if isinstance(_type, type) and issubclass(_type, RunInput):
        return _type
    if isinstance(_type, type) and issubclass(_type, pydantic.BaseModel):
        return RunInput.subclass_from_base_model_type(_type)
    return AutomaticRunInput.subclass_from_type(_type)


class GetInputHandler(Generic[R]):
    """Iterates (sync or async) over new inputs of one type sent to a flow run."""

    def __init__(self, run_input_cls: type[R], key_prefix: str, timeout: float | None,
                 poll_interval: float, raise_timeout_error: bool, exclude_keys: set[str] | None,
                 flow_run_id: str | uuid.UUID | None, with_metadata: bool) -> None:
        self.run_input_cls = run_input_cls
        self.key_prefix = key_prefix
        self.timeout = timeout
        self.poll_interval = max(0.05, poll_interval)
        self.raise_timeout_error = raise_timeout_error
        self.exclude_keys = set(exclude_keys or ())
        self.flow_run_id = actions.current_flow_run_id(flow_run_id)
        self.with_metadata = with_metadata

    def _wrap(self, stored: Any) -> Any:
        self.exclude_keys.add(stored.key)
        instance = self.run_input_cls.load_from_flow_run_input(stored, self.flow_run_id)
        if isinstance(instance, AutomaticRunInput) and not self.with_metadata:
            return instance.value
        return instance

    def _deadline(self) -> float | None:
        return None if self.timeout is None else time.monotonic() + self.timeout

    def _expired(self) -> Any:
        if self.raise_timeout_error:
            return TimeoutError(f"no input with key prefix {self.key_prefix!r} within {self.timeout}s")
        return None

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        deadline = self._deadline()
        while True:
            found = actions.filter_sync(self.key_prefix, 1, self.exclude_keys, self.flow_run_id)
            if found:
                return self._wrap(found[0])
            if deadline is not None and time.monotonic() >= deadline:
                error = self._expired()
                raise error if error is not None else StopIteration
            time.sleep(self.poll_interval if deadline is None
                       else max(0.0, min(self.poll_interval, deadline - time.monotonic())))

    def __aiter__(self) -> AsyncIterator[Any]:
        return self

    async def __anext__(self) -> Any:
        import asyncio

        deadline = self._deadline()
        while True:
            found = await actions.afilter_flow_run_input(self.key_prefix, 1, self.exclude_keys,
                                                         self.flow_run_id)
            if found:
                return self._wrap(found[0])
            if deadline is not None and time.monotonic() >= deadline:
                error = self._expired()
                raise error if error is not None else StopAsyncIteration
            await asyncio.sleep(self.poll_interval if deadline is None
                                else max(0.0, min(self.poll_interval, deadline - time.monotonic())))


def receive_input(input_type: Any, timeout: float | None = 3600, poll_interval: float = 10,
                  raise_timeout_error: bool = False, exclude_keys: set[str] | None = None,
                  key_prefix: str | None = None, flow_run_id: str | uuid.UUID | None = None,
                  with_metadata: bool = False) -> GetInputHandler[Any]:
    """Iterate (``for`` or ``async for``) over inputs of ``input_type`` sent to the flow run.

    Each input is yielded once; after ``timeout`` seconds without a new one the
    iteration ends (or raises ``TimeoutError`` with ``raise_timeout_error``).
    """
    cls = run_input_subclass_from_type(input_type)
    return cls.receive(timeout, poll_interval, raise_timeout_error, exclude_keys, key_prefix,
                       flow_run_id, with_metadata)


def _prepare(run_input: Any, key_prefix: str | None) -> tuple[RunInput, str]:
    instance: RunInput
    if isinstance(run_input, RunInput):
        instance = run_input
    elif isinstance(run_input, pydantic.BaseModel):
        instance = RunInput.subclass_from_base_model_type(type(run_input))(**run_input.model_dump())
    else:
        instance = AutomaticRunInput.subclass_from_type(type(run_input))(value=run_input)
    prefix = key_prefix or f"{type(instance).__name__.lower()}-auto"
    return instance, f"{prefix}-{uuid.uuid4()}"


async def asend_input(run_input: Any, flow_run_id: str | uuid.UUID, sender: str | None = None,
                      key_prefix: str | None = None) -> None:
    instance, key = _prepare(run_input, key_prefix)
    await actions.acreate_flow_run_input_from_model(key, instance, flow_run_id, sender)


@dual(asend_input)
def send_input(run_input: Any, flow_run_id: str | uuid.UUID, sender: str | None = None,
               key_prefix: str | None = None) -> None:
    """Send ``run_input`` (a RunInput, a pydantic model or any JSON value) to a flow run."""
    _send_sync(run_input, flow_run_id, sender, key_prefix)


def _send_sync(run_input: Any, flow_run_id: str | uuid.UUID, sender: str | None,
               key_prefix: str | None) -> None:
    instance, key = _prepare(run_input, key_prefix)
    actions.create_sync(key, instance.model_dump(mode="json"), flow_run_id,
                        sender or actions.current_sender())
