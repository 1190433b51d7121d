"""The one exception tree of flowbus.

Every error flowbus raises on purpose derives from :class:`FlowbusError`, so a caller
can catch them all, and each message says what was wrong, with the offending value,
and what to do. The SDK re-exports this root as ``flowbus.exceptions.FlowbusError``.
"""

from __future__ import annotations


class FlowbusError(Exception):
    """Root of every error flowbus raises on purpose."""


class InvalidEvent(FlowbusError, ValueError):
    """A CloudEvent is malformed; ``attribute`` names the part that is wrong."""

    def __init__(self, attribute: str, reason: str) -> None:
        self.attribute = attribute
        self.reason = reason
        super().__init__(f"invalid CloudEvent attribute {attribute!r}: {reason}")


class EventTooLarge(FlowbusError, ValueError):
    """An encoded event is bigger than the configured limit."""

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(
            f"event is {size} bytes encoded, over the limit of {limit} bytes "
            "(setting FLOWBUS_EVENT_MAX_BYTES); send a reference to large data instead"
        )


class BusUnavailable(FlowbusError, ConnectionError):
    """NATS could not be reached or did not answer in time."""


class PublishFailed(FlowbusError):
    """JetStream refused or did not acknowledge a publish."""


class LayoutConflict(FlowbusError):
    """An existing stream or bucket has a configuration that cannot be updated to ours."""


class NotFound(FlowbusError, LookupError):
    """A key, stream or object that was asked for does not exist."""


class AlreadyExists(FlowbusError):
    """A create found the key already there."""


class UpdateConflict(FlowbusError):
    """A compare-and-set update kept losing races and gave up."""


class TransitionRejected(FlowbusError):
    """A proposed state transition is not allowed; the message says why."""


class SettingsError(FlowbusError, ValueError):
    """A setting is unknown or has a bad value."""


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` says NATS was unreachable or leaderless for a moment.

    Such a failure (a node restarting, a cluster electing a stream leader) goes away
    by itself: the work that met it is retried, never given up on.
    """
    from nats.errors import ConnectionClosedError, ConnectionReconnectingError, NoRespondersError
    from nats.errors import TimeoutError as NatsTimeout
    from nats.js.errors import NoStreamResponseError, ServiceUnavailableError

    return isinstance(exc, (
        BusUnavailable, TimeoutError, NatsTimeout, NoRespondersError, ConnectionClosedError,
        ConnectionReconnectingError, NoStreamResponseError, ServiceUnavailableError))
