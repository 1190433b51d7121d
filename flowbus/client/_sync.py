"""The blocking client: :class:`FlowbusClient`'s methods run on a private event loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from types import TracebackType
from typing import Any, TypeVar

from flowbus.client import ApiError, FlowbusClient

T = TypeVar("T")


async def _await(awaitable: Awaitable[T]) -> T:
    return await awaitable


class SyncFlowbusClient:
    """The same methods, blocking: each call runs on the client's own event-loop thread.

    Usable from any thread, including from inside a running event loop (the call
    blocks that loop, as any blocking call would).
    """

    def __init__(self, client: FlowbusClient) -> None:
        self._client = client
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> SyncFlowbusClient:
        loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=loop.run_forever, name="flowbus-client", daemon=True)
        self._thread.start()
        self._loop = loop
        self._run(self._client.__aenter__())
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._loop is None:
            return
        try:
            self._run(self._client.aclose())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            if self._thread is not None:
                self._thread.join(timeout=5)
            self._loop.close()
            self._loop = None

    def _run(self, coroutine: Awaitable[T]) -> T:
        if self._loop is None:
            if isinstance(coroutine, Coroutine):
                coroutine.close()
            raise ApiError(0, "the client is not open; use it as `with get_client(sync_client=True) as client`")
        return asyncio.run_coroutine_threadsafe(_await(coroutine), self._loop).result()

    def follow_logs(self, flow_run_id: str) -> Iterator[dict[str, Any]]:
        """A run's log records as they arrive, until the run is final."""
        stream = self._client.follow_logs(flow_run_id)
        try:
            while True:
                try:
                    yield self._run(stream.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            self._run(stream.aclose())

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._client, name)
        if not callable(method):
            return method  # type: ignore[no-any-return]

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._run(method(*args, **kwargs))

        call.__name__ = name
        call.__doc__ = method.__doc__
        return call
