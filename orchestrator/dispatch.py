"""From a fired trigger or a run request to a :class:`RunRequest`, and on to creation.

Parameters are the deployment's defaults overlaid with the trigger's, rendered from
the event with :func:`events.templates.render_value_async` (a single ``{{ expression }}``
keeps its type), then checked against the deployment's parameter schema
(:mod:`events.parameters`): a run whose parameters do not fit is stored Failed with
a message naming each bad parameter, and never sent to a runner. A template that fails, a paused or unknown deployment, or a
malformed run request creates no run and emits ``flowbus.automation.action.failed``
saying why.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError

from events.messages import plain
from events.parameters import check_parameters, describe
from events.records import Deployment, FlowRun, flow_run_id_for
from events.runs import RunRequested, event_ref
from events.templates import TemplateError, render_value_async
from orchestrator.creation import SOURCE, RunCreator, RunRequest
from orchestrator.deployments import DeploymentCatalog
from orchestrator.evaluator import Firing
from orchestrator.index import EventView
from orchestrator.metrics import Metrics
from orchestrator.types import Clock

log = logging.getLogger("flowbus.orchestrator.dispatch")



def refusal(deployment: Deployment, parameters: dict[str, Any]) -> str | None:
    """Why ``parameters`` cannot run ``deployment`` (each bad parameter named), or None."""
    problems = check_parameters(deployment.parameter_schema, parameters)
    return describe(deployment.name, problems) + "; the run was not started" if problems else None


def _self_caused(firing: Firing) -> bool:
    """Whether the event is about a run this very trigger created (a trigger loop)."""
    event = firing.context.get("event", {})
    data = event.get("data")
    if event.get("source") != SOURCE or not isinstance(data, dict):
        return False
    key = data.get("idempotency_key")
    return isinstance(key, str) and key.startswith(f"trigger:{firing.deployed.id}:")


class Dispatcher:
    """Turns firings and run requests into created runs."""

    def __init__(
        self, catalog: DeploymentCatalog, creator: RunCreator, metrics: Metrics,
        clock: Clock,
    ) -> None:
        self._catalog = catalog
        self._creator = creator
        self._metrics = metrics
        self._clock = clock

    async def fire(self, firing: Firing) -> FlowRun | None:
        """Create the run of a fired deployment trigger (None when none may be created)."""
        deployed = firing.deployed
        if deployed.deployment is None:  # an automation's trigger: orchestrator/automations
            return None
        run_id = flow_run_id_for(*firing.run_id_parts)
        deployment = self._catalog.get(deployed.deployment.name)
        failure = {"kind": "trigger", "deployment": deployed.deployment.name,
                   "trigger_id": deployed.id, "flow_run_id": run_id,
                   "triggering_event": firing.triggering_event}
        if deployment is None or _self_caused(firing):
            return None
        self._metrics.firings.labels(deployed.definition.type).inc()
        if deployment.paused:
            self._metrics.failures.labels("paused").inc()
            return None
        try:
            rendered = await render_value_async(deployed.definition.parameters, firing.context)
        except TemplateError as exc:
            await self._creator.emit_failure(
                run_id, f"parameters of trigger {deployed.id}: {exc}", {**failure, "kind": "template"}
            )
            return None
        if not isinstance(rendered, dict):  # pragma: no cover - a dict renders to a dict
            return None
        parameters = {**deployment.parameters, **rendered}
        request = RunRequest(
            flow_run_id=run_id,
            deployment=deployment,
            origin="trigger",
            parameters=parameters,
            refused=refusal(deployment, parameters),
            expected_start_time=self._clock() + deployed.definition.schedule_after,
            idempotency_key=":".join(firing.run_id_parts),
            triggering_event=firing.triggering_event,
        )
        return await self._creator.create(request)

    async def run_requested(self, view: EventView) -> FlowRun | None:
        """Create the run a ``flowbus.deployment.run-requested`` event asks for."""
        event = view.event
        run_id = flow_run_id_for("manual", event.source, event.id)
        ref = event_ref(event)
        base: dict[str, Any] = {"kind": "manual", "flow_run_id": run_id, "triggering_event": ref}
        try:
            asked = RunRequested.model_validate(event.data)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(p) for p in first.get("loc", ())) or "data"
            await self._creator.emit_failure(
                run_id, f"run request {event.id!r} is malformed: {where}: {plain(first)}", base
            )
            return None
        deployment = self._catalog.get(asked.deployment)
        base["deployment"] = asked.deployment
        if deployment is None:
            await self._creator.emit_failure(
                run_id, f"deployment {asked.deployment!r} does not exist", base
            )
            return None
        if deployment.paused:
            await self._creator.emit_failure(
                run_id, f"deployment {asked.deployment!r} is paused; resume it to run it", base
            )
            return None
        if asked.flow_run_id is not None and asked.flow_run_id != run_id:
            log.warning("run request %s named flow run %s; using the derived id %s",
                        event.id, asked.flow_run_id, run_id)
        start = asked.scheduled_start_time or self._clock()
        parameters = {**deployment.parameters, **asked.parameters}
        request = RunRequest(
            flow_run_id=run_id,
            deployment=deployment,
            origin="manual",
            parameters=parameters,
            refused=refusal(deployment, parameters),
            expected_start_time=start,
            idempotency_key=f"manual:{event.source}:{event.id}",
            tags=asked.tags,
            name=asked.name,
            triggering_event=ref,
        )
        return await self._creator.create(request)
