"""What a held run is executed from: its code bundle and its :class:`RunSpec`.

A run's code comes from its deployment's bundle in the object store when the
deployment has one (unpacked under the flowbus home, see :mod:`flowbus.bundles`),
from the runner's image otherwise. Either function answers a message (``str``)
instead when the run cannot be executed; the runner records it as the run's failure.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from events.bus import Bus
from events.errors import FlowbusError
from events.records import Deployment
from flowbus.bundles import fetch_bundle
from flowbus.entrypoints import EntrypointError
from flowbus.results import flowbus_home
from runners.records import HeldRun
from runners.settings import RunnerSettings
from runners.types import RunSpec

Resolver = Callable[[Deployment], tuple[str, str]]


async def code_root(bus: Bus, held: HeldRun) -> Path | str | None:
    """The unpacked code bundle of the run's deployment (None: code from the image)."""
    deployment = held.deployment
    if deployment is None or not deployment.code_digest:
        return None
    try:
        return await fetch_bundle(bus, deployment.code_digest, flowbus_home() / "bundles")
    except FlowbusError as exc:
        return f"could not fetch the code bundle of deployment {deployment.name!r}: {exc}"


def run_spec(held: HeldRun, settings: RunnerSettings, resolve: Resolver,
             root: Path | None = None) -> RunSpec | str:
    run, deployment = held.run, held.deployment
    if deployment is None:
        return (f"the deployment {run.deployment_name!r} of this run was not found"
                if run.deployment_name else "the run has no deployment to take its code from")
    try:
        module, attribute = resolve(deployment)
    except EntrypointError as exc:
        return str(exc)
    return RunSpec(
        flow_run_id=run.id, flow_run_name=run.name, module=module, attribute=attribute,
        parameters={**deployment.parameters, **run.parameters},
        deployment_id=deployment.id, deployment_name=deployment.name, tags=tuple(run.tags),
        result_max_bytes=settings.result_max_bytes, attempt=held.attempt,
        code_root=str(root or settings.code_root), durable_tasks=run.durable_tasks,
    )
