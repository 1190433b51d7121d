"""What the UI's buttons do: cancel, rerun and resume a run, run, pause and resume a deployment.

Every action is a POST with the CSRF token and needs the ``write`` scope (see
:mod:`gateway.ui.session`); it goes through the same code as the REST API and
answers with a redirect to the page that shows its effect.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac

from aiohttp import web

from events.records import Deployment
from gateway.api import deployments, flow_runs
from gateway.api.deployments import RunRequest, request_run
from gateway.api.flow_runs import FlowRunQuery, query_runs
from gateway.api.routing import Call
from gateway.context import gateway_of
from gateway.problems import Problem
from gateway.ui import resume_view, runs_view
from gateway.ui.forms import parse_parameters
from gateway.ui.pages import deployment_view, load_deployment, page
from gateway.ui.session import CSRF_COOKIE, CSRF_FIELD, Viewer, check_action, end_session

_MAX_FIELD_CHARS = 100_000
_CREATED_WAIT_SECONDS = 5.0


async def _form(request: web.Request, viewer: Viewer) -> dict[str, str]:
    form = await request.post()
    values = {k: v for k, v in form.items() if isinstance(v, str)}
    if any(len(v) > _MAX_FIELD_CHARS for v in values.values()):
        raise Problem(413, f"a form field is longer than {_MAX_FIELD_CHARS} characters")
    await check_action(request, viewer, values.get(CSRF_FIELD))
    return values


async def _created(request: web.Request, run_id: str) -> str:
    """The new run's page, once the orchestrator wrote its record (or after a few seconds).

    A run requested here is created by the orchestrator: sending the browser to its
    page before the record exists would show a 404.
    """
    gateway = gateway_of(request)
    kv = await gateway.kv(gateway.bus.layout.flow_runs)

    async def written() -> None:
        async for change in kv.watch(run_id):  # the current value first, then changes
            if change.value is not None:
                return

    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(_CREATED_WAIT_SECONDS):
            await written()
    return f"/ui/runs/{run_id}"


def _call(request: web.Request, viewer: Viewer) -> Call:
    # The REST API's handler, with the path values of the UI route (same names).
    return Call(request, gateway_of(request), viewer.principal, None, None)


@page
async def cancel_run(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    await _form(request, viewer)
    await flow_runs.cancel_flow_run(_call(request, viewer))
    raise web.HTTPSeeOther(f"/ui/runs/{request.match_info['flow_run_id']}")


@page
async def resume_run(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    """Resume a paused run with the input of its Resume form (see :mod:`gateway.ui.resume_view`)."""
    form = await _form(request, viewer)
    return await resume_view.resume_run(request, viewer, form)


@page
async def rerun(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    """A new run of the same deployment with the same parameters and tags."""
    await _form(request, viewer)
    run = await runs_view.load_run(request)
    if run.deployment_name is None:
        raise Problem(409, "this run has no deployment, so it cannot be run again from here")
    gateway = gateway_of(request)
    kv = await gateway.kv(gateway.bus.layout.deployments)
    entry = await kv.get(run.deployment_name)
    if entry is None:
        raise Problem(404, f"deployment {run.deployment_name!r} no longer exists")
    deployment = Deployment.model_validate_json(entry.value)
    outcome = await request_run(gateway, deployment,
                                RunRequest(parameters=run.parameters, tags=run.tags))
    raise web.HTTPSeeOther(await _created(request, outcome.flow_run_id))


@page
async def run_deployment(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    """The Run form: parameters checked against the schema; errors shown, nothing created."""
    form = await _form(request, viewer)
    deployment = await load_deployment(request)
    params, errors = parse_parameters(deployment.parameter_schema, form)
    if errors:
        runs = await query_runs(request, FlowRunQuery(deployment=deployment.name, limit=20))
        values = {k.removeprefix("p."): v for k, v in form.items() if k.startswith("p.")}
        return deployment_view(request, viewer, deployment, runs.items, status=400,
                               errors=errors, values=values)
    outcome = await request_run(gateway_of(request), deployment, RunRequest(parameters=params))
    raise web.HTTPSeeOther(await _created(request, outcome.flow_run_id))


@page
async def pause_deployment(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    await _form(request, viewer)
    await deployments.pause_deployment(_call(request, viewer))
    raise web.HTTPSeeOther(f"/ui/deployments/{request.match_info['name']}")


@page
async def resume_deployment(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    await _form(request, viewer)
    await deployments.resume_deployment(_call(request, viewer))
    raise web.HTTPSeeOther(f"/ui/deployments/{request.match_info['name']}")


async def logout(request: web.Request) -> web.StreamResponse:
    """End the session (needs the CSRF token, so another site cannot log the user out)."""
    form = await request.post()
    sent = str(form.get(CSRF_FIELD) or "")
    cookie = request.cookies.get(CSRF_COOKIE, "")
    if not cookie or not hmac.compare_digest(sent.encode(), cookie.encode()):
        raise web.HTTPForbidden(text="the form's CSRF token is missing or does not match")
    response = web.Response(status=303, headers={"Location": "/ui/login"})
    end_session(response)
    return response
