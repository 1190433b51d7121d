"""Deploying: check the flows, bundle the code, register the deployments.

``flowbus deploy`` and ``Flow.deploy`` both come here, so a deployment made either
way is checked, bundled and stored identically::

    project = load_project(Path("flowbus.yaml"))
    async with await Bus.connect(NatsSettings()) as bus:
        results = await deploy_project(bus, Path("."), project)
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from prometheus_client import Counter

from events.bus import Bus
from events.deployments import save_deployment
from events.entrypoints import locate, parse_entrypoint
from events.messages import plain
from events.parameters import stored_parameter_problems
from events.records import Deployment
from flowbus.bundles import Bundle, build_bundle, upload_bundle
from flowbus.entrypoints import EntrypointError, FlowInfo, inspect_entrypoints
from flowbus.project import BuildConfig, DeploymentSpec, DeploySettings, Project

DEPLOYED = Counter("flowbus_deployments_registered", "deployments registered", ["outcome"])


@dataclass(frozen=True, slots=True)
class Deployed:
    """One registered deployment and whether it was new."""

    deployment: Deployment
    created: bool


@dataclass(frozen=True, slots=True)
class DeployOutcome:
    """What a deploy did: the deployments, and the bundle (None when not bundling)."""

    deployments: list[Deployed]
    bundle: Bundle | None
    uploaded: bool


def check_specs(root: Path, specs: list[DeploymentSpec]) -> list[FlowInfo]:
    """Entrypoints inside ``root`` that exist, define a @flow and accept the parameters."""
    for spec in specs:
        try:
            locate(parse_entrypoint(spec.entrypoint), root)
        except EntrypointError as exc:
            raise EntrypointError(f"deployment {spec.name!r}: {exc}") from None
    try:
        return inspect_entrypoints(root, [(s.entrypoint, s.parameters) for s in specs])
    except EntrypointError as exc:
        # Name the deployment, not only the entrypoint (several may share one).
        for spec in specs:
            if repr(spec.entrypoint) in str(exc):
                raise EntrypointError(f"deployment {spec.name!r}: {exc}") from None
        raise


def to_deployment(spec: DeploymentSpec, info: FlowInfo, code_digest: str | None) -> Deployment:
    """The record of ``spec`` for the flow it points at."""
    return Deployment(
        name=spec.name, flow_name=info.flow_name, entrypoint=spec.entrypoint,
        work_pool=spec.work_pool, parameters=spec.parameters,
        parameter_schema=info.parameter_schema, triggers=spec.triggers,
        schedules=spec.schedules, concurrency_limit=spec.concurrency_limit, tags=spec.tags,
        version=spec.version if spec.version is not None else info.version,
        description=spec.description if spec.description is not None else info.description,
        code_digest=code_digest, retries=info.retries,
        retry_delay_seconds=info.retry_delay_seconds, durable_tasks=spec.durable_tasks,
    )


def check_stored_parameters(records: list[Deployment]) -> None:
    """EntrypointError naming every trigger or schedule whose runs could never bind."""
    for record in records:
        problems = stored_parameter_problems(
            record.parameter_schema, record.parameters, record.triggers, record.schedules)
        if problems:
            raise EntrypointError(f"deployment {record.name!r}: " + "; ".join(problems))


async def deploy_project(
    bus: Bus,
    root: Path,
    project: Project,
    names: tuple[str, ...] | list[str] = (),
    *,
    settings: DeploySettings | None = None,
    source: str = "flowbus/cli",
) -> DeployOutcome:
    """Check, bundle, upload and register ``names`` (all when empty) of ``project``."""
    settings = settings or DeploySettings()
    specs = project.select(names)
    infos = await asyncio.to_thread(check_specs, root, specs)
    return await register(bus, root, specs, infos, project.build, settings=settings, source=source)


async def register(
    bus: Bus,
    root: Path,
    specs: list[DeploymentSpec],
    infos: list[FlowInfo],
    build: BuildConfig,
    *,
    settings: DeploySettings,
    source: str,
) -> DeployOutcome:
    """Bundle (when asked) and save the checked deployments."""
    bundle: Bundle | None = None
    uploaded = False
    records = [to_deployment(spec, info, None) for spec, info in zip(specs, infos, strict=True)]
    check_stored_parameters(records)  # before uploading anything
    if build.bundle:
        bundle = await asyncio.to_thread(build_bundle, root, build, settings.bundle_max_bytes)
        uploaded = await upload_bundle(bus, bundle)
    deployed = []
    for spec, info in zip(specs, infos, strict=True):
        record = to_deployment(spec, info, bundle.digest if bundle else None)
        stored, created = await save_deployment(bus, record, source=source)
        DEPLOYED.labels("created" if created else "updated").inc()
        deployed.append(Deployed(stored, created))
    return DeployOutcome(deployed, bundle, uploaded)


def spec_for_flow(
    flow: Any,
    name: str,
    *,
    root: Path,
    entrypoint: str | None,
    work_pool_name: str | None,
    triggers: list[Any] | None,
    schedules: list[Any] | None,
    cron: str | None,
    interval: float | timedelta | None,
    parameters: dict[str, Any] | None,
    tags: list[str] | None,
    description: str | None,
    version: str | None,
    concurrency_limit: int | None,
    durable_tasks: bool = True,
) -> DeploymentSpec:
    """The deployment spec ``Flow.deploy`` describes (entrypoint derived from the source)."""
    import inspect

    from pydantic import BaseModel

    if entrypoint is None:
        source_file = inspect.getsourcefile(flow.fn)
        if source_file is None:
            raise EntrypointError(f"flow {flow.name!r} has no source file; pass entrypoint=")
        try:
            relative = Path(source_file).resolve().relative_to(root.resolve())
        except ValueError:
            raise EntrypointError(
                f"flow {flow.name!r} is defined in {source_file}, outside the current "
                f"directory {root}; run from the project directory or pass entrypoint="
            ) from None
        entrypoint = f"{relative.as_posix()}:{flow.fn.__name__}"
    from flowbus.schedules import as_deployment_schedule

    all_schedules = [s.model_dump(mode="json") if isinstance(s, BaseModel) else as_deployment_schedule(s)
                     for s in schedules or []]  # fmt: skip
    if cron is not None:
        all_schedules.append({"cron": cron})
    if interval is not None:
        all_schedules.append({"interval": interval})
    from pydantic import ValidationError

    from flowbus.utilities.annotations import unwrap_annotation

    try:  # freeze(x) gives x: the value is stored, but not locked (docs/compat.md)
        return DeploymentSpec(
            name=name, entrypoint=entrypoint, parameters={k: unwrap_annotation(v) for k, v in (parameters or {}).items()},
            triggers=[t.model_dump(mode="json") if isinstance(t, BaseModel) else t for t in triggers or []],
            schedules=all_schedules, work_pool=work_pool_name or "default", tags=tags or [],
            description=description, version=version, concurrency_limit=concurrency_limit,
            durable_tasks=durable_tasks,
        )
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        field = ".".join(str(p) for p in first.get("loc", ()))
        message = plain(first)
        raise EntrypointError(f"deployment {name!r} field {field}: {message}") from None


def deploy_flow(flow: Any, name: str, *, root: Path | None = None, bundle: bool = True,
                **options: Any) -> str:
    """``Flow.deploy``: check, bundle the current directory and register; the deployment id.

    The bundle honours the ``build`` section of a ``flowbus.yaml`` in ``root`` when
    there is one. Blocks; inside a running event loop it works on a thread of its own.
    """
    import os

    from events.bus import Bus
    from events.settings import NatsSettings
    from flowbus.entrypoints import INSPECTING_ENV
    from flowbus.project import PROJECT_FILE, load_project

    if os.environ.get(INSPECTING_ENV):
        return ""  # the module is being imported to be checked, not run
    root = (root or Path.cwd()).resolve()
    spec = spec_for_flow(flow, name, root=root, **options)
    infos = check_specs(root, [spec])
    build = load_project(root / PROJECT_FILE).build if (root / PROJECT_FILE).is_file() else BuildConfig()
    build = build.model_copy(update={"bundle": bundle and build.bundle})
    settings = DeploySettings()

    async def go() -> DeployOutcome:
        async with await Bus.connect(NatsSettings(), name="flowbus-sdk") as bus:
            return await register(bus, root, [spec], infos, build, settings=settings,
                                  source="flowbus/sdk")

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        outcome = asyncio.run(go())
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(1) as pool:
            outcome = pool.submit(asyncio.run, go()).result()
    return outcome.deployments[0].deployment.id
