"""The API's cancel, resume and delete: asked of the leading orchestrator, which writes the record.

The gateway's NATS user may not write flow-run records (events/permissions.py): a
state change is a :class:`~events.control.ControlRequest` the leading orchestrator
validates and carries out (:mod:`events.control`). Its outcome becomes the answer:
``not_found`` 404, ``conflict`` 409, ``invalid`` 422 (:class:`InputRefused`, so the
UI can show its form again); no orchestrator answering in time is 503.
"""

from __future__ import annotations

from typing import Any

from events import control
from events.assets import AssetRecord
from events.background import TaskRunRecord
from events.control import ControlReply, ControlRequest
from events.records import FlowRun
from events.run_input import MAX_INPUT_BYTES
from gateway.api.emit import SOURCE
from gateway.context import Gateway
from gateway.problems import Problem


class InputRefused(Exception):
    """The orchestrator refused the run input (422); ``str()`` says why."""


async def change_run(gateway: Gateway, action: control.Action, flow_run_id: str,
                     run_input: dict[str, Any] | None = None) -> FlowRun:
    """The record after ``action``; :class:`Problem` (404, 409, 503) or :class:`InputRefused`."""
    request = ControlRequest(action=action, flow_run_id=flow_run_id, run_input=run_input,
                             source=SOURCE)
    reply = await _ask(gateway, request)
    if reply.outcome == "ok" and reply.run is not None:
        return reply.run
    raise _refusal(gateway, reply, f"no flow run with id {flow_run_id!r}")


async def cancel_task_run(gateway: Gateway, task_run_id: str) -> TaskRunRecord:
    """The background task run's record after its cancel; :class:`Problem` (404, 409, 503)."""
    reply = await _ask(gateway, ControlRequest(action="cancel-task-run", task_run_id=task_run_id,
                                               source=SOURCE))
    if reply.outcome == "ok" and reply.task_run is not None:
        return reply.task_run
    raise _refusal(gateway, reply, f"no task run with id {task_run_id!r}")


async def delete_asset(gateway: Gateway, key: str) -> AssetRecord:
    """The asset's record before its delete; :class:`Problem` (404, 409, 503)."""
    reply = await _ask(gateway, ControlRequest(action="delete-asset", asset_key=key, source=SOURCE))
    if reply.outcome == "ok" and reply.asset is not None:
        return reply.asset
    raise _refusal(gateway, reply, f"no asset with key {key!r}")


async def _ask(gateway: Gateway, request: ControlRequest) -> ControlReply:
    try:
        return await control.ask(gateway.bus, request)
    except control.RequestTooLarge:
        raise InputRefused(f"the run input is too large: a run input holds at most "
                           f"{MAX_INPUT_BYTES} bytes") from None
    except control.NoController as exc:
        raise Problem(503, f"the run could not be changed now: {exc}; retry shortly",
                      headers={"Retry-After": str(gateway.settings.retry_after_seconds)}) from None


def _refusal(gateway: Gateway, reply: ControlReply, unknown: str) -> Exception:
    """The exception the API raises for an orchestrator's refusal."""
    if reply.outcome == "not_found":
        return Problem(404, unknown)
    if reply.outcome == "conflict":
        return Problem(409, reply.detail)
    if reply.outcome == "invalid":
        return InputRefused(reply.detail)
    return Problem(503, f"the orchestrator could not change the run now: {reply.detail}; "
                       "retry shortly",
                  headers={"Retry-After": str(gateway.settings.retry_after_seconds)})
