"""Control requests: the gateway asks, the leading orchestrator writes the run record.

The REST API's cancel and resume change a flow run's state, its delete removes a
run's record, and its cancel of a background task run changes that run's record. The gateway does not write
run records itself (its NATS user may not): it sends a :class:`ControlRequest` on
:func:`request_subject` (core NATS request/reply, no stream) and the leading
orchestrator, the only subscriber, validates it, performs the compare-and-set write,
publishes the state events and answers with a :class:`ControlReply`. Only the gateway
(and the admin) may publish on that subject, only the orchestrator subscribes to it.

The asker waits at most :data:`REPLY_TIMEOUT_SECONDS`; no orchestrator leading (no
responder) or no answer in time is :class:`NoController`, which the API answers
with 503. A request that timed out may still have been carried out: the record
tells (a second cancel of a run already ``Cancelling`` is refused as a conflict).

>>> request_subject("flowbus")
'flowbus.control.flow-run'
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Literal

from nats.aio.msg import Msg
from nats.errors import MaxPayloadError, NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from events import jsonlimits
from events.assets import MAX_ASSET_KEY_LENGTH, AssetRecord, InvalidAssetKey, check_asset_key
from events.background import TaskRunRecord
from events.bus import Bus
from events.errors import BusUnavailable, FlowbusError
from events.records import FlowRun

log = logging.getLogger("flowbus.events.control")

REPLY_TIMEOUT_SECONDS = 5.0
# The queue group the orchestrators answer in (only the leader subscribes; the group
# keeps a request answered once should two briefly overlap during a handover).
QUEUE_GROUP = "orchestrator"
# Requests carried out at once by one orchestrator; more are answered "busy".
MAX_IN_FLIGHT = 64
RUN_ID_PATTERN = r"^[-_=A-Za-z0-9](?:[-_=.A-Za-z0-9]{0,254}[-_=A-Za-z0-9])?$"

Action = Literal["cancel", "resume", "delete", "cancel-task-run", "delete-asset"]
# The action on a background task run (``task_run_id``); the others act on a flow run.
TASK_RUN_ACTIONS = frozenset({"cancel-task-run"})
Outcome = Literal["ok", "not_found", "conflict", "invalid", "busy"]


def request_subject(namespace: str) -> str:
    """The subject of flow-run control requests (not captured by any stream)."""
    return f"{namespace}.control.flow-run"


class ControlRequest(BaseModel):
    """Change one run on a user's request: the API's cancel, resume and delete of a flow
    run (``flow_run_id``), and its cancel of a background task run (``task_run_id``)."""

    model_config = ConfigDict(extra="forbid")

    action: Action
    flow_run_id: str | None = Field(default=None, pattern=RUN_ID_PATTERN,
                                    description="the flow run of cancel, resume and delete")
    task_run_id: str | None = Field(default=None, pattern=RUN_ID_PATTERN,
                                    description="the background task run of cancel-task-run")
    asset_key: str | None = Field(default=None, max_length=MAX_ASSET_KEY_LENGTH,
                                  description="the asset of delete-asset (a valid asset key)")
    run_input: dict[str, Any] | None = Field(
        default=None, description="resume only: the input the paused run waits for")
    source: str = Field(default="flowbus/gateway", pattern=r"^flowbus/[A-Za-z0-9._-]{1,100}$",
                        description="the source of the state events the change publishes "
                        "(one of flowbus's own parts)")


    @model_validator(mode="after")
    def _one_target(self) -> ControlRequest:
        if self.action == "delete-asset" or self.asset_key is not None:
            if self.action != "delete-asset" or self.asset_key is None \
                    or self.flow_run_id is not None or self.task_run_id is not None:
                raise ValueError("delete-asset names an asset_key and no run, and only it does")
            try:
                check_asset_key(self.asset_key)
            except InvalidAssetKey as exc:
                raise ValueError(str(exc)) from None
            return self
        wants_task = self.action in TASK_RUN_ACTIONS
        if wants_task and (self.task_run_id is None or self.flow_run_id is not None):
            raise ValueError(f"{self.action} names a task_run_id and no flow_run_id")
        if not wants_task and (self.flow_run_id is None or self.task_run_id is not None):
            raise ValueError(f"{self.action} names a flow_run_id and no task_run_id")
        return self

    @property
    def target(self) -> str:
        """The id of the run the request acts on."""
        return self.task_run_id or self.flow_run_id or self.asset_key or ""


class ControlReply(BaseModel):
    """What the orchestrator did: ``ok`` with the record after, or why not."""

    model_config = ConfigDict(extra="forbid")

    outcome: Outcome
    detail: str = ""
    run: FlowRun | None = None
    task_run: TaskRunRecord | None = None
    asset: AssetRecord | None = None


class NoController(FlowbusError):
    """No orchestrator answered (none leads, or it did not answer in time)."""


class RequestTooLarge(FlowbusError, ValueError):
    """The request is larger than NATS carries."""


async def ask(bus: Bus, request: ControlRequest,
              wait_seconds: float = REPLY_TIMEOUT_SECONDS) -> ControlReply:
    """Send ``request`` to the leading orchestrator; its reply.

    :class:`NoController` when none answers within ``wait_seconds``,
    :class:`RequestTooLarge` when the request cannot travel.
    """
    nc = bus._nc
    data = request.model_dump_json().encode()
    if nc.max_payload and len(data) > nc.max_payload:
        raise RequestTooLarge(f"the request is {len(data)} bytes, over the {nc.max_payload} "
                              "bytes NATS carries")
    try:
        msg = await nc.request(request_subject(bus.layout.namespace), data, timeout=wait_seconds)
    except NoRespondersError:
        raise NoController("no orchestrator is leading to carry out the request") from None
    except (NatsTimeout, TimeoutError):
        raise NoController(f"no orchestrator answered within {wait_seconds:g} s") from None
    except MaxPayloadError as exc:
        raise RequestTooLarge(str(exc)) from None
    except Exception as exc:  # connection closed or draining
        raise BusUnavailable(f"sending the control request failed: {exc!r}") from None
    try:
        return ControlReply.model_validate_json(msg.data)
    except ValidationError as exc:
        raise NoController(f"the orchestrator's answer could not be read: {exc}") from None


Handler = Callable[[ControlRequest], Awaitable[ControlReply]]


@contextlib.asynccontextmanager
async def answering(bus: Bus, handler: Handler) -> AsyncIterator[None]:
    """Answer control requests with ``handler`` while the block runs.

    A malformed request is answered ``invalid`` without calling ``handler``; a handler
    that raises is answered ``busy`` (the asker answers 503) and logged. Up to
    :data:`MAX_IN_FLIGHT` requests are carried out at once, more are answered ``busy``.
    """
    in_flight: set[asyncio.Task[None]] = set()

    async def carry_out(msg: Msg) -> None:
        try:
            request = ControlRequest.model_validate(jsonlimits.loads(msg.data))
        except (ValidationError, ValueError) as exc:
            reply = ControlReply(outcome="invalid", detail=f"malformed control request: {exc}"[:2000])
        else:
            try:
                reply = await handler(request)
            except Exception as exc:  # a NATS hiccup or a bug: the asker may retry
                log.warning("carrying out a %s of %s failed: %r", request.action,
                            request.target, exc)
                reply = ControlReply(outcome="busy", detail=f"the orchestrator failed: {exc!r}"[:500])
        if msg.reply:
            with contextlib.suppress(Exception):
                await msg.respond(reply.model_dump_json().encode())

    async def on_message(msg: Msg) -> None:
        if len(in_flight) >= MAX_IN_FLIGHT:
            if msg.reply:
                with contextlib.suppress(Exception):
                    await msg.respond(ControlReply(outcome="busy", detail="too many requests at once")
                                      .model_dump_json().encode())
            return
        task = asyncio.create_task(carry_out(msg))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)

    sub = await bus._nc.subscribe(request_subject(bus.layout.namespace), queue=QUEUE_GROUP,
                                  cb=on_message)
    try:
        await bus._nc.flush(timeout=5)  # the server knows the subscription before we say so
        yield
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(sub.unsubscribe(), 2.0)
        if in_flight:
            await asyncio.wait(set(in_flight), timeout=REPLY_TIMEOUT_SECONDS)


__all__ = [
    "REPLY_TIMEOUT_SECONDS", "ControlReply", "ControlRequest", "NoController",
    "RequestTooLarge", "answering", "ask", "request_subject",
]
