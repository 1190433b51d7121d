"""What each action does, given the firing's template context.

Every action is one attempt here; :mod:`orchestrator.automations.delivery` retries,
records and dead-letters. An action that has nothing to do (a run that is no longer
Failed, a run past its attempts) returns a note instead of failing.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from events import automation_store
from events.automation_actions import (
    CallWebhook,
    CancelFlowRun,
    ChangeFlowRunState,
    DoNothing,
    EmitEvent,
    PauseAutomation,
    PauseDeployment,
    ResumeAutomation,
    ResumeDeployment,
    RetryFlowRun,
    RunDeployment,
    SendNotification,
)
from events.automations import Automation, source_of
from events.bus import Bus
from events.cloudevent import CloudEvent
from events.deployments import read_result, request_cancel, run_request_event, set_paused
from events.errors import BusUnavailable, NotFound, PublishFailed, TransitionRejected
from events.notification_channels import Channel
from events.records import FlowRun
from events.sealed import SecretBox, SecretOpenError, SecretsKeyError, open_tree, open_value
from events.templates import render_value_async
from orchestrator.automations.http import DeliveryFailed, HttpSender
from orchestrator.automations.notify import Notifier
from orchestrator.creation import RunCreator
from orchestrator.deployments import DeploymentCatalog

RETRYABLE = frozenset({"Failed", "Crashed"})


@dataclass
class FiringContext:
    """What templates of one firing see: ``event``, ``events``, ``flow_run``, ``deployment``,
    ``result`` (loaded only when a template names it) and ``automation``."""

    automation: Automation
    key: str
    event: dict[str, Any]
    events: list[dict[str, Any]]
    resolve: bool = False
    values: dict[str, Any] = field(default_factory=dict)
    # The firing's own event (triggered/resolved), published while the actions start;
    # awaited before any action event, so the stream keeps them in order.
    announced: Awaitable[Any] | None = None
    # Tells JetStream the triggering event is still being worked on (resets its ack timer).
    heartbeat: Callable[[], Awaitable[None]] | None = None

    def flow_run(self) -> dict[str, Any] | None:
        event = self.event
        data = event.get("data")
        if str(event.get("type", "")).startswith("flowbus.flow-run.") and isinstance(data, dict):
            return data
        return None

    def flow_run_id(self) -> str | None:
        run = self.flow_run()
        if run is not None:
            return str(run.get("id"))
        subject = str(self.event.get("subject") or "")
        if subject.startswith("flowbus.flow-run."):
            return subject.removeprefix("flowbus.flow-run.")
        data = self.event.get("data")
        if isinstance(data, dict) and isinstance(data.get("flow_run_id"), str):
            return str(data["flow_run_id"])
        return None

    def deployment_name(self) -> str | None:
        run = self.flow_run()
        if run is not None and run.get("deployment_name"):
            return str(run["deployment_name"])
        subject = str(self.event.get("subject") or "")
        if subject.startswith("flowbus.deployment."):
            return subject.removeprefix("flowbus.deployment.")
        data = self.event.get("data")
        if isinstance(data, dict) and isinstance(data.get("deployment"), str):
            return str(data["deployment"])
        return None


def _mentions(value: Any, word: str) -> bool:
    return word in json.dumps(value, default=str)


class ActionRunner:
    """Runs one attempt of an action."""

    def __init__(
        self, bus: Bus, deployments: DeploymentCatalog, creator: RunCreator, http: HttpSender,
        notifier: Notifier, clock: Callable[[], datetime], result_max_bytes: int,
        create_requested: Callable[[CloudEvent], Awaitable[Any]] | None = None,
        secrets: SecretBox | None = None,
    ) -> None:
        self._bus = bus
        self._secrets = secrets  # opens sealed secrets just before they are used
        self._deployments = deployments
        self._creator = creator
        self._http = http
        self._notifier = notifier
        self._clock = clock
        self._result_max_bytes = result_max_bytes
        self._create_requested = create_requested

    async def template_context(self, ctx: FiringContext, templates: Any) -> dict[str, Any]:
        """The variables for ``templates``; the flow run's result only when they name it."""
        if not ctx.values:
            run = ctx.flow_run()
            name = ctx.deployment_name()
            deployment = self._deployments.get(name) if name else None
            ctx.values = {
                "event": ctx.event, "events": ctx.events, "flow_run": run,
                "deployment": deployment.model_dump(mode="json") if deployment else None,
                "automation": {"id": ctx.automation.id, "name": ctx.automation.name},
            }
        if "result" not in ctx.values and _mentions(templates, "result"):
            ctx.values["result"] = await self._result(ctx.flow_run())
        return ctx.values

    async def _result(self, run: dict[str, Any] | None) -> Any:
        if run is None or not (run.get("result_ref") or run.get("state", {}).get("type") == "COMPLETED"):
            return None
        record = FlowRun.model_validate({k: v for k, v in run.items() if k in FlowRun.model_fields})
        try:
            value = await read_result(self._bus, record)
        except NotFound:
            return None
        if len(json.dumps(value, default=str)) > self._result_max_bytes:
            raise DeliveryFailed(f"the result of flow run {record.id} is over the template limit", permanent=True)
        return value

    async def run(self, action: Any, ctx: FiringContext, key: str) -> dict[str, Any]:
        """Do ``action`` once; details for the ``executed`` event."""
        try:
            return await self._dispatch(action, ctx, key)
        except (BusUnavailable, PublishFailed) as exc:
            raise DeliveryFailed(str(exc)) from None
        except (SecretOpenError, SecretsKeyError) as exc:  # the key is wrong or missing
            raise DeliveryFailed(str(exc), permanent=True) from None
        except (NotFound, TransitionRejected, ValueError) as exc:  # TemplateError is a ValueError
            raise DeliveryFailed(str(exc), permanent=True) from None
        except DeliveryFailed:
            raise
        except Exception as exc:  # anything else is retried, then dead-lettered, never a stuck event
            raise DeliveryFailed(f"{type(exc).__name__}: {exc}") from exc

    async def _dispatch(self, action: Any, ctx: FiringContext, key: str) -> dict[str, Any]:
        source = source_of(ctx.automation.id)
        if isinstance(action, RunDeployment):
            return await self._run_deployment(action, ctx, key)
        if isinstance(action, RetryFlowRun):
            return await self._retry(action, ctx)
        if isinstance(action, CancelFlowRun):
            run_id = await self._run_id(action.flow_run_id, ctx)
            try:
                cancelled = await request_cancel(self._bus, run_id, source=source)
            except TransitionRejected as exc:
                return {"flow_run_id": run_id, "skipped": str(exc)}
            return {"flow_run_id": run_id, "state": cancelled.state.name}
        if isinstance(action, ChangeFlowRunState):
            return await self._change_state(action, ctx)
        if isinstance(action, PauseDeployment | ResumeDeployment):
            name = action.deployment or ctx.deployment_name()
            if not name:
                raise NotFound("the event names no deployment; set `deployment` in the action")
            paused = isinstance(action, PauseDeployment)
            await set_paused(self._bus, name, paused, source=source)
            return {"deployment": name, "paused": paused}
        if isinstance(action, PauseAutomation | ResumeAutomation):
            target = action.automation_id or ctx.automation.id
            enabled = isinstance(action, ResumeAutomation)
            await automation_store.set_enabled(self._bus, target, enabled)
            return {"automation_id": target, "enabled": enabled}
        if isinstance(action, SendNotification):
            channel = Channel.model_validate(open_tree(
                (await automation_store.get_channel(self._bus, action.channel)).model_dump(), self._secrets))
            values = await self.template_context(ctx, [action.subject, action.body])
            subject = str(await render_value_async(action.subject, values))
            body = str(await render_value_async(action.body, values))
            await self._notifier.send(channel, subject, body, ctx.event, key)
            return {"channel": channel.name, "kind": channel.config.kind}
        if isinstance(action, CallWebhook):
            values = await self.template_context(ctx, action.body)
            rendered = await render_value_async(action.body, values)
            payload = rendered.encode() if isinstance(rendered, str) else json.dumps(rendered, default=str).encode()
            status = await self._http.send(
                action.url, payload, method=action.method,
                headers=open_tree({"headers": action.headers}, self._secrets)["headers"],
                secret=open_value(action.secret, self._secrets) if action.secret else None,
                delivery=key, attempts=1, time_limit=action.timeout_seconds,
            )
            return {"url": action.url, "status": status}
        if isinstance(action, EmitEvent):
            values = await self.template_context(ctx, [action.subject, action.data])
            about = await render_value_async(action.subject, values) if action.subject else None
            event = CloudEvent.create(
                action.event, source=source, id=key, subject=str(about) if about else None,
                data=await render_value_async(action.data, values),
            )
            await self._bus.publish(event)
            return {"event": action.event, "id": key}
        assert isinstance(action, DoNothing)
        return {}

    async def _run_id(self, template: str | None, ctx: FiringContext) -> str:
        if template:
            return str(await render_value_async(template, await self.template_context(ctx, template)))
        run_id = ctx.flow_run_id()
        if not run_id:
            raise NotFound("the event is about no flow run; set `flow_run_id` in the action")
        return run_id

    async def _run_deployment(self, action: RunDeployment, ctx: FiringContext, key: str) -> dict[str, Any]:
        name = action.deployment or ctx.deployment_name()
        if not name:
            raise NotFound("the event names no deployment; set `deployment` in the action")
        deployment = self._deployments.get(name)
        if deployment is None:
            raise NotFound(f"deployment {name!r} does not exist")
        if deployment.paused:
            raise DeliveryFailed(f"deployment {name!r} is paused; resume it to run it", permanent=True)
        values = await self.template_context(ctx, action.parameters)
        parameters = await render_value_async(action.parameters, values)
        request = run_request_event(
            name, parameters, source=source_of(ctx.automation.id), tags=action.tags, idempotency_key=key,
        )
        if self._create_requested is None:
            await self._bus.publish(request)
        else:
            # The leader creates the run now, as it will again (idempotently) when the
            # request arrives from the stream: one hop through JetStream saved.
            await asyncio.gather(self._bus.publish(request), self._create_requested(request))
        return {"deployment": name, "flow_run_id": str(request.data["flow_run_id"])}

    async def _record(self, run_id: str) -> FlowRun:
        kv = await self._bus.kv(self._bus.layout.flow_runs)
        entry = await kv.get(run_id)
        if entry is None:
            raise NotFound(f"flow run {run_id!r} not found")
        return FlowRun.model_validate_json(entry.value)

    async def _retry(self, action: RetryFlowRun, ctx: FiringContext) -> dict[str, Any]:
        run = await self._record(await self._run_id(action.flow_run_id, ctx))
        if run.state.name not in RETRYABLE:
            return {"flow_run_id": run.id, "skipped": f"the run is {run.state.name}, not Failed or Crashed"}
        if run.run_count >= action.max_attempts:
            return {"flow_run_id": run.id, "skipped": f"the run had {run.run_count} attempts of {action.max_attempts}"}
        start = self._clock() + timedelta(seconds=action.delay_seconds)
        try:
            moved = await self._creator.move(
                run, "AwaitingRetry", f"retried by automation {ctx.automation.name!r}",
                expected_start_time=start,
            )
        except TransitionRejected as exc:
            return {"flow_run_id": run.id, "skipped": str(exc)}
        await self._creator.finish(moved)  # the job when due, and the state event
        return {"flow_run_id": run.id, "attempt": moved.run_count + 1}

    async def _change_state(self, action: ChangeFlowRunState, ctx: FiringContext) -> dict[str, Any]:
        run = await self._record(await self._run_id(action.flow_run_id, ctx))
        message = None
        if action.message:
            message = str(await render_value_async(action.message, await self.template_context(ctx, action.message)))
        moved = await self._creator.move(run, action.state, message)
        await self._creator.finish(moved)
        return {"flow_run_id": run.id, "state": moved.state.name}
