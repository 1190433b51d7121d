"""What connectors and the pipeline share: a received message with its ack verbs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from events.errors import FlowbusError
from events.source_messages import SourceMessage


class SourceAuthFailed(FlowbusError):
    """The broker refused the source's credentials."""


class SourceUnavailable(FlowbusError):
    """The broker cannot be reached, went away, or refused what the source asked for."""


class ReconnectNow(SourceUnavailable):
    """Not a failure: the connector wants a fresh connection at once (no backoff)."""


@dataclass(slots=True)
class Incoming:
    """One received message; ``ack`` after its event is stored, ``nak`` to have it again."""

    message: SourceMessage
    ack: Callable[[], Awaitable[None]]
    nak: Callable[[], Awaitable[None]]
    received: float  # monotonic seconds, for the added-latency histogram


Deliver = Callable[[list[Incoming]], Awaitable[None]]
Connected = Callable[[], Awaitable[None]]
Lag = Callable[[int], None]


class Connector(Protocol):
    """Connects to one broker and feeds batches of messages to ``deliver`` until stopped.

    ``run`` returns when ``stopping`` is set (after the batch in hand is delivered) and
    raises :class:`SourceAuthFailed` or :class:`SourceUnavailable` when the broker
    refuses or goes away.
    """

    async def run(self, deliver: Deliver, connected: Connected) -> None: ...


async def _noop() -> None:
    return None


NOOP: Callable[[], Awaitable[None]] = _noop
