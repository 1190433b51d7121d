"""Resuming a Paused or Suspended run from its page, with the input it waits for.

The form is generated from the JSON schema the paused body saved (its ``RunInput``
type), field by field as the deployment Run form (:mod:`gateway.ui.forms`). A submitted
form is converted to those types, then resumed as the REST API resumes
(:mod:`gateway.api.run_control`: the leading orchestrator runs :func:`events.pauses.resume`,
the one implementation the command line also calls): the input is validated against
the saved schema there, and a refusal is shown on the page (422) with the run left as
it was.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from events import pauses
from events import run_input as inputs
from events.records import FlowRun
from gateway.api import run_control
from gateway.context import gateway_of
from gateway.problems import Problem
from gateway.ui import runs_view
from gateway.ui.forms import Field, fields_of, parse_parameters
from gateway.ui.render import render
from gateway.ui.session import Viewer


async def _saved(request: web.Request, run: FlowRun, which: str) -> Any:
    pause = run.state.data.pause
    keyset = pause.run_input_keyset if pause is not None else None
    if not keyset or which not in keyset:
        return None
    gateway = gateway_of(request)
    store = await gateway.kv(gateway.bus.layout.run_input)
    try:
        saved = await inputs.get_input(store, run.id, keyset[which])
    except ValueError:  # a key the pause could not have written
        return None
    return None if saved is None else saved.value


async def resume_context(request: web.Request, run: FlowRun, *,
                         errors: dict[str, str] | None = None,
                         values: dict[str, str] | None = None,
                         refusal: str = "") -> dict[str, Any]:
    """What the run page needs to show the Resume form (nothing when the run is not paused)."""
    if run.state.name not in pauses.PAUSED_STATES:
        return {"resumable": False}
    pause = run.state.data.pause
    waits = bool(pause is not None and pause.run_input_keyset)
    schema = await _saved(request, run, "schema") if waits else None
    description = await _saved(request, run, "description") if waits else None
    fields: list[Field] = fields_of(schema) if isinstance(schema, dict) else []
    return {
        "resumable": True,
        "waits_for_input": waits,
        "schema_saved": isinstance(schema, dict),
        "input_fields": fields,
        "input_description": description if isinstance(description, str) else "",
        "input_errors": errors or {},
        "input_values": values or {},
        "resume_refusal": refusal,
    }


async def _page(request: web.Request, viewer: Viewer, run: FlowRun, status: int,
                **form: Any) -> web.Response:
    details = await runs_view.details(request, run)
    context = await resume_context(request, run, **form)
    return render("run.html", status=status, viewer=viewer, nav="runs", run=run,
                  **details, **context)


async def resume_run(request: web.Request, viewer: Viewer, form: dict[str, str]
                     ) -> web.StreamResponse:
    """Resume with the form's input; the run page again (422) when the input is refused."""
    run = await runs_view.load_run(request)
    if run.state.name not in pauses.PAUSED_STATES:
        raise Problem(409, f"flow run {run.id} is {run.state.name}, not Paused or Suspended; "
                           "only a paused run can be resumed")
    schema = await _saved(request, run, "schema")
    values = {k.removeprefix("p."): v for k, v in form.items() if k.startswith("p.")}
    run_input: dict[str, Any] | None = None
    if isinstance(schema, dict):
        run_input, errors = parse_parameters(schema, form)
        if errors:
            return await _page(request, viewer, run, 422, errors=errors, values=values)
    try:
        await run_control.change_run(gateway_of(request), "resume", run.id, run_input)
    except run_control.InputRefused as exc:
        return await _page(request, viewer, run, 422, values=values, refusal=str(exc))
    raise web.HTTPSeeOther(f"/ui/runs/{run.id}")
