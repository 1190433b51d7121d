"""``/api/v1/deployments``: definitions in ``flowbus-deployments``, and asking for runs.

Every change is followed by a ``flowbus.deployment.<change>`` event whose data is
the deployment. A run is asked for with a ``flowbus.deployment.run-requested``
event (docs/contract.md); the orchestrator creates it, so the answer names the
flow-run id at once, and ``?wait=SECONDS`` watches the run's record until it is
final, serverless style.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    create_model,
    field_validator,
)
from pydantic.fields import FieldInfo

from events.cloudevent import CloudEvent, encode
from events.errors import AlreadyExists, EventTooLarge, NotFound
from events.parameters import check_parameters, describe, stored_parameter_problems
from events.records import Deployment, FlowRun, State
from events.runs import RunRequested, run_requested_event
from events.validation import InvalidDefinition, check_deployment
from gateway.api.emit import SOURCE, emit
from gateway.api.paging import Page, PageQuery, page_of
from gateway.api.routing import ApiRouter, Call, check_key
from gateway.auth import Scope, check_scope
from gateway.context import Gateway, closing_of
from gateway.problems import Problem, invalid_input

log = logging.getLogger("flowbus.gateway.api")

router = ApiRouter()

_SERVER_FIELDS = frozenset({"id", "created", "updated"})
# Where the code runners execute comes from: changing it needs the deploy scope.
CODE_LOCATION_FIELDS = frozenset({"entrypoint", "code_digest"})

DeploymentCreate: type[BaseModel] = create_model(  # type: ignore[call-overload]
    "DeploymentCreate",
    __config__=ConfigDict(extra="forbid"),
    __doc__="A new deployment (id and timestamps are set by the server).",
    **{
        name: (field.annotation, field)
        for name, field in Deployment.model_fields.items()
        if name not in _SERVER_FIELDS
    },
)



def _optional(annotation: Any) -> Any:
    return annotation | None


def _strict(field: FieldInfo) -> bool | None:
    """Whether a field refuses coercion (``"yes"`` for a bool): kept in the update body."""
    return True if any(isinstance(m, Strict) for m in field.metadata) else None


DeploymentUpdate: type[BaseModel] = create_model(  # type: ignore[call-overload]
    "DeploymentUpdate",
    __config__=ConfigDict(extra="forbid"),
    __doc__="Changes to a deployment; absent fields stay as they are.",
    **{
        name: (_optional(field.annotation),
               Field(default=None, description=field.description, strict=_strict(field)))
        for name, field in Deployment.model_fields.items()
        if name not in _SERVER_FIELDS | {"name"}
    },
)


class RunRequest(BaseModel):
    """Ask for a run of a deployment."""

    model_config = ConfigDict(extra="forbid")

    parameters: dict[str, Any] = Field(default_factory=dict, description="override parameters")
    tags: list[str] = Field(default_factory=list, max_length=100, description="extra tags")
    name: str | None = Field(default=None, max_length=256, description="the run's name")
    scheduled_start_time: datetime | None = Field(
        default=None, description="start no earlier than this (RFC 3339 with offset)"
    )
    idempotency_key: str | None = Field(
        default=None, min_length=1, max_length=200,
        description="a retried request with the same key maps to the same run",
    )

    @field_validator("scheduled_start_time")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("must carry a time zone offset, e.g. 2024-05-01T12:00:00Z")
        return value


class RunQuery(BaseModel):
    """How long to wait for the run to finish."""

    model_config = ConfigDict(extra="forbid")

    wait: float | None = Field(
        default=None, ge=0, le=3600,
        description="seconds to wait for a final state (capped by the gateway's setting)",
    )


class RunOutcome(BaseModel):
    """A requested run: its id, and with ?wait its state and result."""

    flow_run_id: str = Field(description="the run's id, known at once")
    event_id: str = Field(description="id of the run-requested event")
    state: State | None = Field(default=None, description="the run's state when answered")
    final: bool = Field(default=False, description="whether that state is final")
    result: Any = Field(default=None, description="the run's JSON result, when persisted")
    result_available: bool = Field(default=False, description="whether a result was found")


def refuse_bad_parameters(deployment: Deployment, parameters: dict[str, Any]) -> None:
    """422 naming each parameter the deployment's schema refuses; nothing is created."""
    problems = check_parameters(deployment.parameter_schema, parameters)
    if problems:
        detail = describe(deployment.name, problems)
        log.warning("run refused: %s", detail)
        raise Problem(422, detail, errors=[{"field": f"parameters.{p.name}", "reason": p.reason}
                                           for p in problems])


def refuse_bad_stored_parameters(deployment: Deployment) -> None:
    """422 when default, trigger or schedule parameters could never make a valid run."""
    problems = stored_parameter_problems(deployment.parameter_schema, deployment.parameters,
                                         deployment.triggers, deployment.schedules)
    if problems:
        raise Problem(422, f"deployment {deployment.name!r}: " + "; ".join(problems),
                      errors=[{"field": "parameters", "reason": p} for p in problems])


def _kv_name(call: Call) -> str:
    return call.gateway.bus.layout.deployments


async def _load(call: Call) -> Deployment:
    name = check_key(call.path("name"), "deployment")
    kv = await call.gateway.kv(_kv_name(call))
    raw = await kv.get_json(name)
    if raw is None:
        raise Problem(404, f"no deployment named {name!r}")
    return Deployment.model_validate(raw)


async def _change(call: Call, change: Callable[[Deployment], Deployment]) -> Deployment:
    name = check_key(call.path("name"), "deployment")
    kv = await call.gateway.kv(_kv_name(call))

    def step(raw: Any | None) -> Any | None:
        if raw is None:
            return None
        return change(Deployment.model_validate(raw)).model_dump(mode="json")

    stored = await kv.update_json(name, step)
    if stored is None:
        raise Problem(404, f"no deployment named {name!r}")
    return Deployment.model_validate(stored)


def check_usable(gateway: Gateway, deployment: Deployment) -> Deployment:
    """422 naming the field the orchestrator or a runner would refuse (the same check,
    events/validation.py), or 413 when its change event could not be published; so
    nothing is stored that would fail later."""
    try:
        check_deployment(deployment)
    except InvalidDefinition as exc:
        raise Problem(422, str(exc), errors=[{"field": exc.field, "reason": exc.message}]) \
            from None
    limit = min(gateway.settings.event_max_bytes, gateway.bus.settings.event_max_bytes)
    event = CloudEvent.create("flowbus.deployment.updated", source=SOURCE,
                              subject=f"flowbus.deployment.{deployment.name}",
                              data=deployment.model_dump(mode="json"))
    try:
        encode(event, limit)
    except EventTooLarge as exc:
        raise Problem(413, f"the deployment is {exc.size} bytes as an event, over the limit "
                      f"of {limit} bytes", size=exc.size, limit=limit) from None
    return deployment


async def _announce(gateway: Gateway, change: str, deployment: Deployment) -> None:
    await emit(gateway, f"flowbus.deployment.{change}", f"flowbus.deployment.{deployment.name}",
               deployment.model_dump(mode="json"))


@router.route("POST", "/deployments", scope=Scope.DEPLOY,
              summary="Create a deployment (its code location needs the deploy scope)",
              body=DeploymentCreate, response=Deployment, status=201, errors=(409, 422))
async def create_deployment(call: Call) -> Deployment:
    try:
        deployment = Deployment.model_validate(call.body.model_dump())
    except ValidationError as exc:
        raise invalid_input(exc) from None
    check_usable(call.gateway, deployment)
    refuse_bad_stored_parameters(deployment)
    kv = await call.gateway.kv(_kv_name(call))
    try:
        await kv.create(deployment.name, deployment.model_dump_json().encode())
    except AlreadyExists:
        raise Problem(409, f"a deployment named {deployment.name!r} already exists") from None
    await _announce(call.gateway, "created", deployment)
    return deployment


@router.route("GET", "/deployments", scope=Scope.READ, summary="List deployments",
              query=PageQuery, response=Page[Deployment])
async def list_deployments(call: Call) -> Page[Deployment]:
    kv = await call.gateway.kv(_kv_name(call))
    names = await kv.keys()
    raws = await asyncio.gather(*(kv.get_json(n) for n in names))
    return page_of([Deployment.model_validate(r) for r in raws if r is not None], call.query)


@router.route("GET", "/deployments/{name}", scope=Scope.READ, summary="Get a deployment",
              response=Deployment, errors=(404,))
async def get_deployment(call: Call) -> Deployment:
    return await _load(call)


@router.route("PATCH", "/deployments/{name}", scope=Scope.WRITE, summary="Change a deployment",
              body=DeploymentUpdate, response=Deployment, errors=(404, 422))
async def update_deployment(call: Call) -> Deployment:
    changes = call.body.model_dump(exclude_unset=True)
    moved = sorted(CODE_LOCATION_FIELDS & set(changes))
    if moved:
        check_scope(call.principal, Scope.DEPLOY, f" to change {', '.join(moved)}")

    def apply(current: Deployment) -> Deployment:
        merged = {**current.model_dump(), **changes, "updated": datetime.now(UTC)}
        try:
            changed = check_usable(call.gateway, Deployment.model_validate(merged))
        except ValidationError as exc:
            raise invalid_input(exc) from None
        refuse_bad_stored_parameters(changed)
        return changed

    deployment = await _change(call, apply)
    await _announce(call.gateway, "updated", deployment)
    return deployment


@router.route("DELETE", "/deployments/{name}", scope=Scope.WRITE, summary="Delete a deployment",
              status=204, errors=(404,))
async def delete_deployment(call: Call) -> None:
    deployment = await _load(call)
    kv = await call.gateway.kv(_kv_name(call))
    await kv.delete(deployment.name)
    await _announce(call.gateway, "deleted", deployment)


def _paused(value: bool) -> Callable[[Deployment], Deployment]:
    def apply(current: Deployment) -> Deployment:
        return current.model_copy(update={"paused": value, "updated": datetime.now(UTC)})

    return apply


@router.route("POST", "/deployments/{name}/pause", scope=Scope.WRITE,
              summary="Pause a deployment (its triggers and schedules stop)",
              response=Deployment, errors=(404,))
async def pause_deployment(call: Call) -> Deployment:
    deployment = await _change(call, _paused(True))
    await _announce(call.gateway, "paused", deployment)
    return deployment


@router.route("POST", "/deployments/{name}/resume", scope=Scope.WRITE,
              summary="Resume a paused deployment", response=Deployment, errors=(404,))
async def resume_deployment(call: Call) -> Deployment:
    deployment = await _change(call, _paused(False))
    await _announce(call.gateway, "resumed", deployment)
    return deployment


@router.route("POST", "/deployments/{name}/runs", scope=Scope.WRITE,
              summary="Run a deployment: 202 with the run id at once; with ?wait, 200 and its outcome "
              "once final",
              body=RunRequest, query=RunQuery, response=RunOutcome, status=202, errors=(404, 422))
async def run_deployment(call: Call) -> RunOutcome | web.Response:
    body: RunRequest = call.body
    query: RunQuery = call.query
    deployment = await _load(call)
    outcome = await request_run(call.gateway, deployment, body)
    if not query.wait:
        return outcome
    run_id = outcome.flow_run_id
    timeout = min(query.wait, call.gateway.settings.wait_max_seconds)
    run = await wait_final(call.gateway, run_id, timeout, closing_of(call.request))
    if run is None:
        return outcome
    outcome.state, outcome.final = run.state, run.state.is_final()
    if not outcome.final:
        return outcome
    outcome.result_available, outcome.result = await read_result(call.gateway, run_id)
    return web.Response(status=200, body=outcome.model_dump_json().encode(),
                        content_type="application/json")


async def request_run(gateway: Gateway, deployment: Deployment, body: RunRequest) -> RunOutcome:
    """Publish the run-requested event of a manual run; the orchestrator creates the run.

    Parameters that do not fit the deployment's schema are refused first (422 naming
    each), so the API and the UI create nothing that would fail.
    """
    refuse_bad_parameters(deployment, {**deployment.parameters, **body.parameters})
    event_id = body.idempotency_key or str(uuid.uuid4())
    event = run_requested_event(
        RunRequested(deployment=deployment.name, parameters=body.parameters, tags=body.tags,
                     name=body.name, scheduled_start_time=body.scheduled_start_time),
        source=SOURCE, event_id=event_id,
    )
    run_id = str(event.data["flow_run_id"])
    await gateway.bus.publish(event)
    return RunOutcome(flow_run_id=run_id, event_id=event_id)


async def wait_final(
    gateway: Gateway, run_id: str, seconds: float, closing: asyncio.Event
) -> FlowRun | None:
    """The run's record once final, or as last seen when ``seconds`` run out or the
    gateway shuts down (None: no record yet)."""
    kv = await gateway.kv(gateway.bus.layout.flow_runs)
    last: list[FlowRun] = []

    async def watch() -> None:
        async for change in kv.watch(run_id):
            if change.value is None:
                continue
            last.append(FlowRun.model_validate_json(change.value))
            if last[-1].state.is_final():
                return

    watching = asyncio.create_task(watch())
    shutdown = asyncio.create_task(closing.wait())
    try:
        await asyncio.wait({watching, shutdown}, timeout=seconds,
                           return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (watching, shutdown):
            task.cancel()
        await asyncio.gather(watching, shutdown, return_exceptions=True)
    error = watching.exception() if watching.done() and not watching.cancelled() else None
    if error is not None:
        raise error
    return last[-1] if last else None


async def read_result(gateway: Gateway, run_id: str) -> tuple[bool, Any]:
    """(found, value) of the run's persisted result; a non-JSON result is found but not shown."""
    store = await gateway.bus.objects(gateway.bus.layout.results)
    try:
        raw = await store.get(run_id)
    except NotFound:
        return False, None
    try:
        payload = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        return True, None
    if isinstance(payload, dict) and payload.get("serializer") == "json":
        return True, payload.get("value")
    return True, None
