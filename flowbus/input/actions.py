"""Reading and writing a flow run's input (Prefect's ``prefect.input.actions``).

Each function is awaitable in async code and a plain call in sync code. The flow
run defaults to the current one. Input lives on the flowbus server (the
``<ns>-flow-run-input`` bucket) when the process has one (a runner's runs, or
``FLOWBUS_NATS_URL`` set); with none, in files under ``$FLOWBUS_HOME/run-input``,
so a flow run in a script or a test reads back what it wrote.

Example::

    from flowbus.input.actions import create_flow_run_input, read_flow_run_input

    create_flow_run_input("greeting", {"text": "hi"}, flow_run_id=run_id)
    read_flow_run_input("greeting", flow_run_id=run_id)   # {'text': 'hi'}
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from flowbus._dual import dual
from flowbus.exceptions import FlowbusError

T = TypeVar("T")


class NoServerError(FlowbusError, RuntimeError):
    """Flow-run input and pausing need a flowbus server, and this process has none."""


def server() -> Any:
    """The process's server connection (``flowbus._remote.Remote``); NoServerError if none."""
    from flowbus import _remote

    remote = _remote.connection()
    if remote is None:
        raise NoServerError(
            "flow-run input and pausing need a flowbus server: run the flow through a "
            "deployment (a runner connects it), or set FLOWBUS_NATS_URL")
    return remote


def on_server(op: Callable[[Any], Coroutine[Any, Any, T]]) -> T:
    """Run ``op(bus)`` on the server connection's loop, from sync code."""
    remote = server()
    return remote.call(op(remote.bus))  # type: ignore[no-any-return]


async def on_server_async(op: Callable[[Any], Coroutine[Any, Any, T]]) -> T:
    remote = server()
    return await remote.acall(op(remote.bus))  # type: ignore[no-any-return]


def _connection() -> Any:
    from flowbus import _remote

    return _remote.connection()


def _on_store(op: Callable[[Any], Coroutine[Any, Any, T]], local: Callable[[], T]) -> T:
    """``op(bus)`` on the server's input bucket, or ``local()`` on the files under
    ``FLOWBUS_HOME`` when the process has no server (`flowbus.input._local`)."""
    remote = _connection()
    if remote is None:
        return local()
    return remote.call(op(remote.bus))  # type: ignore[no-any-return]


async def _on_store_async(op: Callable[[Any], Coroutine[Any, Any, T]], local: Callable[[], T]) -> T:
    remote = _connection()
    if remote is None:
        return local()
    return await remote.acall(op(remote.bus))  # type: ignore[no-any-return]


def _local() -> Any:
    from flowbus.input import _local

    return _local


def current_flow_run_id(flow_run_id: str | uuid.UUID | None) -> str:
    if flow_run_id is not None:
        return str(flow_run_id)
    from flowbus.context import FlowRunContext

    ctx = FlowRunContext.get()
    if ctx is None:
        raise RuntimeError("no flow_run_id given and not inside a flow run")
    return ctx.flow_run.id


def current_sender() -> str | None:
    from flowbus.context import FlowRunContext

    ctx = FlowRunContext.get()
    return f"flowbus.flow-run.{ctx.flow_run.id}" if ctx is not None else None


def _store(bus: Any) -> Awaitable[Any]:
    return bus.kv(bus.layout.run_input)  # type: ignore[no-any-return]


def _create_op(run_id: str, key: str, value: Any, sender: str | None) -> Callable[[Any], Coroutine[Any, Any, None]]:
    async def op(bus: Any) -> None:
        from events.run_input import put_input

        await put_input(await _store(bus), run_id, key, value, sender=sender, create=True)

    return op


async def acreate_flow_run_input(key: str, value: Any, flow_run_id: str | uuid.UUID | None = None,
                                 sender: str | None = None) -> None:
    """Store ``value`` (JSON) under ``key`` for the flow run; an existing key is an error."""
    run_id = current_flow_run_id(flow_run_id)
    await _on_store_async(_create_op(run_id, key, value, sender), lambda: _local().create(run_id, key, value, sender))


@dual(acreate_flow_run_input)
def create_flow_run_input(key: str, value: Any, flow_run_id: str | uuid.UUID | None = None,
                          sender: str | None = None) -> None:
    """Store ``value`` (JSON) under ``key`` for the flow run; an existing key is an error."""
    create_sync(key, value, flow_run_id, sender)


def _model_value(model_instance: Any) -> Any:
    return model_instance.model_dump(mode="json")


async def acreate_flow_run_input_from_model(key: str, model_instance: Any,
                                            flow_run_id: str | uuid.UUID | None = None,
                                            sender: str | None = None) -> None:
    await acreate_flow_run_input(key, _model_value(model_instance), flow_run_id,
                                 sender or current_sender())


@dual(acreate_flow_run_input_from_model)
def create_flow_run_input_from_model(key: str, model_instance: Any,
                                     flow_run_id: str | uuid.UUID | None = None,
                                     sender: str | None = None) -> None:
    """Store a pydantic model instance as the input ``key`` of the flow run."""
    create_sync(key, _model_value(model_instance), flow_run_id, sender or current_sender())


def create_sync(key: str, value: Any, flow_run_id: str | uuid.UUID | None = None,
                sender: str | None = None) -> None:
    """`create_flow_run_input` from sync code, whatever the context."""
    run_id = current_flow_run_id(flow_run_id)
    _on_store(_create_op(run_id, key, value, sender), lambda: _local().create(run_id, key, value, sender))


def read_sync(key: str, flow_run_id: str | uuid.UUID | None = None) -> Any:
    """`read_flow_run_input` from sync code, whatever the context."""
    run_id = current_flow_run_id(flow_run_id)
    stored = _on_store(_read_op(run_id, key), lambda: _local().read(run_id, key))
    return None if stored is None else stored.value


def filter_sync(key_prefix: str, limit: int, exclude_keys: set[str], flow_run_id: str) -> list[Any]:
    """`filter_flow_run_input` from sync code, whatever the context."""
    exclude = set(exclude_keys)
    return _on_store(_filter_op(flow_run_id, key_prefix, limit, exclude),
                     lambda: _local().filter_inputs(flow_run_id, key_prefix, limit, exclude))


def _read_op(run_id: str, key: str) -> Callable[[Any], Coroutine[Any, Any, Any]]:
    async def op(bus: Any) -> Any:
        from events.run_input import get_input

        return await get_input(await _store(bus), run_id, key)

    return op


async def aread_flow_run_input(key: str, flow_run_id: str | uuid.UUID | None = None) -> Any:
    run_id = current_flow_run_id(flow_run_id)
    stored = await _on_store_async(_read_op(run_id, key), lambda: _local().read(run_id, key))
    return None if stored is None else stored.value


@dual(aread_flow_run_input)
def read_flow_run_input(key: str, flow_run_id: str | uuid.UUID | None = None) -> Any:
    """The value stored under ``key`` for the flow run (None if there is none)."""
    return read_sync(key, flow_run_id)


def _filter_op(run_id: str, prefix: str, limit: int, exclude: set[str]) -> Callable[[Any], Coroutine[Any, Any, Any]]:
    async def op(bus: Any) -> Any:
        from events.run_input import list_inputs

        return (await list_inputs(await _store(bus), run_id, prefix, exclude))[:limit]

    return op


async def afilter_flow_run_input(key_prefix: str, limit: int = 1, exclude_keys: set[str] | None = None,
                                 flow_run_id: str | uuid.UUID | None = None) -> list[Any]:
    run_id, exclude = current_flow_run_id(flow_run_id), set(exclude_keys or ())
    return await _on_store_async(_filter_op(run_id, key_prefix, limit, exclude),
                                 lambda: _local().filter_inputs(run_id, key_prefix, limit, exclude))


@dual(afilter_flow_run_input)
def filter_flow_run_input(key_prefix: str, limit: int = 1, exclude_keys: set[str] | None = None,
                          flow_run_id: str | uuid.UUID | None = None) -> list[Any]:
    """The flow run's stored inputs whose key starts with ``key_prefix``, oldest first
    (``events.run_input.StoredInput``: ``key``, ``value``, ``sender``, ``created``)."""
    return filter_sync(key_prefix, limit, set(exclude_keys or ()), current_flow_run_id(flow_run_id))


def _delete_op(run_id: str, key: str) -> Callable[[Any], Coroutine[Any, Any, None]]:
    async def op(bus: Any) -> None:
        from events.run_input import delete_input

        await delete_input(await _store(bus), run_id, key)

    return op


async def adelete_flow_run_input(key: str, flow_run_id: str | uuid.UUID | None = None) -> None:
    run_id = current_flow_run_id(flow_run_id)
    await _on_store_async(_delete_op(run_id, key), lambda: _local().delete(run_id, key))


@dual(adelete_flow_run_input)
def delete_flow_run_input(key: str, flow_run_id: str | uuid.UUID | None = None) -> None:
    """Delete the input ``key`` of the flow run."""
    run_id = current_flow_run_id(flow_run_id)
    _on_store(_delete_op(run_id, key), lambda: _local().delete(run_id, key))


__all__ = [
    "create_flow_run_input", "create_flow_run_input_from_model", "delete_flow_run_input",
    "filter_flow_run_input", "read_flow_run_input",
]
