"""``flow.serve()`` and ``flowbus.serve()``: register deployments, run them in this process.

Example::

    from flowbus import flow, serve

    @flow
    def hello(name: str = "world") -> str:
        return f"hello {name}"

    if __name__ == "__main__":
        hello.serve("hello", triggers=[{"expect": ["com.example.greet"],
                                        "parameters": {"name": "{{ event.data.name }}"}}])

Serving needs a flowbus server (``FLOWBUS_NATS_URL``). The deployments are stored
with ``work_pool`` ``serve-<name>`` (a pool of this process's own, unless one is
given), and an inline runner executes their runs with the flow objects already
imported here, until SIGINT or SIGTERM; then it drains like any runner.

This module is a composition root, like the command line: it imports the runner
service lazily, inside :func:`serve`, so ``import flowbus`` stays light and the SDK
never depends on the services.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from events.messages import plain
from flowbus.exceptions import ConfigurationError

SOURCE = "flowbus/serve"


@dataclass
class RunnerDeployment:
    """A flow and how to deploy it: what ``flow.to_deployment(...)`` returns."""

    flow: Any
    name: str
    parameters: dict[str, Any] = field(default_factory=dict)
    triggers: list[dict[str, Any]] = field(default_factory=list)
    schedules: list[dict[str, Any]] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    description: str | None = None
    version: str | None = None
    concurrency_limit: int | None = None
    work_pool: str | None = None
    entrypoint: str = ""
    durable_tasks: bool = True

    def to_record(self, work_pool: str) -> Any:
        """The ``events.records.Deployment`` to store (pydantic validates it here)."""
        from pydantic import ValidationError

        from events.records import Deployment
        from flowbus.entrypoints import retry_policy

        retries, delay = retry_policy(self.flow)
        try:
            return Deployment(
                name=self.name, flow_name=self.flow.name, entrypoint=self.entrypoint,
                work_pool=work_pool, parameters=self.parameters, triggers=self.triggers,
                schedules=self.schedules, concurrency_limit=self.concurrency_limit,
                tags=self.tags, version=self.version, description=self.description,
                retries=retries, retry_delay_seconds=delay, durable_tasks=self.durable_tasks,
            )
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ConfigurationError(
                f"deployment {self.name!r}: {where}: {plain(first)}"
            ) from None


def _entrypoint_of(flow: Any) -> str:
    """``file.py:fn`` (relative to the working directory) or ``module:fn``; '' if unknown
    or if it breaks an entrypoint rule (a script outside the working directory): the
    served runner runs the flow object itself, the entrypoint only tells other runners."""
    from events.entrypoints import EntrypointError, parse_entrypoint

    found = _entrypoint_text(flow)
    try:
        return str(parse_entrypoint(found)) if found else ""
    except EntrypointError:
        return ""


def _entrypoint_text(flow: Any) -> str:
    fn = getattr(flow, "fn", None)
    module_name = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", "")
    if not module_name or "<" in qualname:
        return ""
    if module_name == "__main__":
        path = getattr(sys.modules.get("__main__"), "__file__", None)
        if not path:
            return ""
        try:
            path = os.path.relpath(path)
        except ValueError:
            pass
        return f"{path}:{qualname}"
    return f"{module_name}:{qualname}"


def _schedules(cron: str | Iterable[str] | None, interval: Any,
               schedules: Sequence[Any] | None) -> list[dict[str, Any]]:
    from events.schedules import InvalidSchedule, parse_schedule

    raw: list[Any] = []
    if cron is not None:
        raw += [{"cron": c} for c in ([cron] if isinstance(cron, str) else cron)]
    if interval is not None:
        items = interval if isinstance(interval, list | tuple) else [interval]
        for item in items:
            seconds = item.total_seconds() if isinstance(item, timedelta) else item
            raw.append({"interval": seconds})
    raw += list(schedules or [])
    from flowbus.schedules import as_deployment_schedule

    out = []
    for item in raw:
        try:
            out.append(parse_schedule(as_deployment_schedule(item)).model_dump(mode="json"))
        except (InvalidSchedule, ValueError) as exc:
            raise ConfigurationError(f"schedule {item!r}: {exc}") from None
    return out


def _triggers(triggers: Sequence[Any] | None) -> list[dict[str, Any]]:
    from events.triggers import InvalidTrigger, parse_deployment_trigger

    out = []
    for item in triggers or []:
        try:
            out.append(parse_deployment_trigger(item).model_dump(mode="json"))
        except InvalidTrigger as exc:
            raise ConfigurationError(str(exc)) from None
    return out


def to_deployment(
    flow: Any,
    name: str | None = None,
    *,
    triggers: Sequence[Any] | None = None,
    cron: str | Iterable[str] | None = None,
    interval: float | timedelta | Sequence[float | timedelta] | None = None,
    schedules: Sequence[Any] | None = None,
    parameters: dict[str, Any] | None = None,
    tags: Iterable[str] | None = None,
    description: str | None = None,
    version: str | None = None,
    concurrency_limit: int | None = None,
    work_pool: str | None = None,
    durable_tasks: bool = True,
) -> RunnerDeployment:
    """A deployment of ``flow`` for :func:`serve`, its triggers and schedules validated.

    Example::

        serve(etl.to_deployment("etl-nightly", cron="0 3 * * *"),
              report.to_deployment("report", triggers=[{"expect": ["etl.done"]}]))
    """
    from flowbus.utilities.annotations import unwrap_annotation

    deployment = RunnerDeployment(  # freeze(x) gives x: stored, not locked (docs/compat.md)
        flow=flow, name=name or flow.name, parameters={k: unwrap_annotation(v) for k, v in (parameters or {}).items()},
        triggers=_triggers(triggers), schedules=_schedules(cron, interval, schedules),
        tags=list(tags or []),
        description=description if description is not None else flow.description,
        version=version if version is not None else flow.version,
        concurrency_limit=concurrency_limit, work_pool=work_pool,
        entrypoint=_entrypoint_of(flow), durable_tasks=durable_tasks,
    )
    deployment.to_record(work_pool or "default")  # fail now, not at serve time
    return deployment


def serve(*deployments: RunnerDeployment, limit: int | None = None) -> None:
    """Register ``deployments`` and execute their runs in this process until SIGINT/SIGTERM.

    Example::

        serve(hello.to_deployment("hello"), bye.to_deployment("bye"), limit=8)
    """
    pool = _work_pool_for(deployments, limit)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise ConfigurationError("serve() blocks; call it from synchronous code, not in an event loop")
    asyncio.run(_serve(list(deployments), pool, limit))


async def aserve(*deployments: RunnerDeployment, limit: int | None = None) -> None:
    """`serve` for async code: runs in the calling event loop until cancelled.

    Example::

        await aserve(hello.to_deployment("hello"), limit=8)
    """
    await _serve(list(deployments), _work_pool_for(deployments, limit), limit)


def deploy(*deployments: RunnerDeployment, work_pool_name: str | None = None, bundle: bool = True) -> list[str]:
    """Deploy several flows' deployments (``flow.to_deployment(...)``) to runners started
    separately; returns their ids. See `Flow.deploy`.

    Example::

        deploy(etl.to_deployment("etl", cron="0 3 * * *"), report.to_deployment("report"),
               work_pool_name="default")
    """
    if not deployments:
        raise ConfigurationError("deploy() needs at least one deployment (flow.to_deployment(...))")
    return [
        d.flow.deploy(
            d.name, work_pool_name=work_pool_name or d.work_pool, triggers=d.triggers,
            schedules=d.schedules, parameters=d.parameters, tags=d.tags, description=d.description,
            version=d.version, concurrency_limit=d.concurrency_limit, bundle=bundle,
            durable_tasks=d.durable_tasks,
        )
        for d in deployments
    ]  # fmt: skip


def _work_pool_for(deployments: Sequence[RunnerDeployment], limit: int | None) -> str:
    """The one work pool `deployments` are served in; a clear error for what cannot be served."""
    if not deployments:
        raise ConfigurationError("serve() needs at least one deployment (flow.to_deployment(...))")
    names = [d.name for d in deployments]
    if len(set(names)) != len(names):
        raise ConfigurationError(f"serve() got the same deployment name twice: {names}")
    pools = {d.work_pool for d in deployments if d.work_pool}
    if len(pools) > 1:
        raise ConfigurationError(
            f"deployments served together share one work pool; got {sorted(pools)}")
    if limit is not None and limit < 1:
        raise ConfigurationError(f"serve() limit must be at least 1, got {limit}")
    from events.settings import nats_url_from_env

    if nats_url_from_env() is None:
        raise ConfigurationError(
            "serving needs a flowbus server: set FLOWBUS_NATS_URL (e.g. nats://127.0.0.1:4222; "
            "`flowbus dev` starts one locally)"
        )
    return pools.pop() if pools else f"serve-{deployments[0].name}"[:64].replace(".", "-")


async def _serve(deployments: list[RunnerDeployment], pool: str, limit: int | None) -> None:
    from events.bus import Bus
    from events.deployments import save_deployment
    from events.settings import NatsSettings, check_environment
    from runners.service import Runner, make_executor
    from runners.settings import RunnerSettings

    check_environment()
    nats = NatsSettings()
    overrides: dict[str, Any] = {"pool": pool, "isolation": "inline"}
    if limit is not None:
        overrides["limit"] = limit
    settings = RunnerSettings(**overrides)
    stop = asyncio.Event()
    if threading.current_thread() is threading.main_thread():
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
    flows = {d.name: d.flow for d in deployments}

    def resolve(deployment: Any) -> tuple[str, str]:
        if deployment.name in flows:
            return "<served>", deployment.name
        from flowbus.entrypoints import resolve_entrypoint

        return resolve_entrypoint(deployment)

    async with await Bus.connect(nats, name=f"flowbus-serve-{pool}") as bus:
        for deployment in deployments:
            await save_deployment(bus, deployment.to_record(pool), source=SOURCE)
        runner = Runner(bus, settings, make_executor(nats, settings, flows), resolver=resolve)
        ready = asyncio.Event()
        task = asyncio.create_task(runner.run(stop, ready))
        await asyncio.wait({task, asyncio.create_task(ready.wait())},
                           return_when=asyncio.FIRST_COMPLETED)
        if ready.is_set():
            print(f"Serving {', '.join(repr(n) for n in flows)} (work pool {pool!r}). "
                  "Stop with Ctrl-C.", file=sys.stderr, flush=True)
        await task


__all__ = ["RunnerDeployment", "serve", "to_deployment"]
