"""``flowbus deploy``, ``flowbus deployment ...`` and ``flowbus flow-run ...``.

They talk to NATS directly through ``events/`` (the same functions the gateway
uses), so they work with or without a gateway running.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from flowbus.cli._common import fail, nats_settings, print_table, run_async
from flowbus.cli._lookup import all_runs, find_deployment, find_run, split_deployment
from flowbus.cli._times import run_duration, run_start

if TYPE_CHECKING:  # the command line imports the bus inside its commands
    from events.bus import Bus

RESULT_WAIT_SECONDS = 3600.0 * 24 * 365


def _nats() -> Any:
    """NATS settings, with the deploy settings known (so FLOWBUS_BUNDLE_MAX_BYTES is not "unknown")."""
    import flowbus.project  # noqa: F401  (registers DeploySettings)

    return nats_settings()


def parse_params(pairs: tuple[str, ...], param_json: str | None) -> dict[str, Any]:
    """``-p key=value`` (value as JSON when it parses, else a string) merged over ``--param-json``."""
    out: dict[str, Any] = {}
    if param_json is not None:
        try:
            loaded = json.loads(param_json)
        except ValueError as exc:
            raise click.BadParameter(f"not valid JSON: {exc}", param_hint="--param-json") from None
        if not isinstance(loaded, dict):
            raise click.BadParameter("must be a JSON object", param_hint="--param-json")
        out.update(loaded)
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{pair!r} is not key=value", param_hint="-p")
        try:
            out[key.strip()] = json.loads(raw)
        except ValueError:
            out[key.strip()] = raw
    return out


@click.command()
@click.option("-f", "--file", "file", default="flowbus.yaml", show_default=True,
              type=click.Path(dir_okay=False, path_type=Path), help="the project file")
@click.option("--name", "-n", "names", multiple=True, help="deploy only this deployment (repeatable)")
@click.option("--all", "deploy_all", is_flag=True, help="deploy every deployment (the default; as Prefect's)")
def deploy(file: Path, names: tuple[str, ...], deploy_all: bool) -> None:
    """Check the flows, upload the code bundle and register the deployments of a project.

    The project file is a flowbus.yaml, or a Prefect prefect.yaml (used when named, or
    when the directory has no flowbus.yaml): each of its keys flowbus does not use is
    reported, and a key that would change what runs is refused.
    """
    if deploy_all and names:
        raise click.UsageError("--all and --name exclude each other")
    if file == Path("flowbus.yaml") and not file.exists() and Path("prefect.yaml").exists():
        file = Path("prefect.yaml")
    _deploy(file, file.resolve().parent, names)


@run_async
async def _deploy(file: Path, root: Path, names: tuple[str, ...]) -> None:
    from events.bus import Bus
    from flowbus.cli._webhook_deploy import apply_webhooks, read_secrets
    from flowbus.deploying import deploy_project
    from flowbus.project import DeploySettings, load_project

    if file.name == "prefect.yaml":
        from flowbus.prefect_yaml import (
            parse_prefect_yaml,
            prefect_yaml_variables,
            read_prefect_yaml,
        )

        text = read_prefect_yaml(file)
        variables = await _read_variables(prefect_yaml_variables(text, str(file)))
        converted = parse_prefect_yaml(text, str(file), variables=variables)
        for note in converted.notes:
            click.echo(note, err=True)
        project = converted.project
    else:
        project = load_project(file)
    project.select(names)  # an unknown --name fails before connecting
    secrets = read_secrets(project.webhooks, str(file))  # a missing secret fails before too
    settings = _nats()
    async with await Bus.connect(settings) as bus:
        outcome = await deploy_project(bus, root, project, names, settings=DeploySettings())
    if outcome.bundle is not None:
        how = "uploaded" if outcome.uploaded else "already stored"
        click.echo(f"bundle {outcome.bundle.digest} ({len(outcome.bundle.files)} files, "
                   f"{len(outcome.bundle.data)} bytes) {how}")
    for item in outcome.deployments:
        d = item.deployment
        click.echo(f"{'created' if item.created else 'updated'} deployment {d.name} "
                   f"({d.flow_name} from {d.entrypoint}, pool {d.work_pool})")
    if project.webhooks:
        for line in await apply_webhooks(project.webhooks, secrets):
            click.echo(line)


async def _read_variables(names: set[str]) -> dict[str, object]:
    """The values of the variables ``names`` on the server (absent ones left out)."""
    if not names:
        return {}
    from events.bus import Bus
    from events.variables import VariableRecord

    async with await Bus.connect(_nats()) as bus:
        kv = await bus.kv(bus.layout.variables)
        found: dict[str, object] = {}
        for name in sorted(names):
            entry = await kv.get(name)
            if entry is not None:
                found[name] = VariableRecord.model_validate_json(entry.value).value
        return found


# --- deployments ------------------------------------------------------------------------


@click.group()
def deployment() -> None:
    """List, inspect, run, pause, resume and delete deployments."""


@deployment.command("ls")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@run_async
async def deployment_ls(as_json: bool) -> None:
    """List deployments."""
    from events.bus import Bus
    from events.deployments import list_deployments

    async with await Bus.connect(_nats()) as bus:
        items = sorted(await list_deployments(bus), key=lambda d: d.name)
    if as_json:
        click.echo(json.dumps([d.model_dump(mode="json") for d in items], indent=2))
        return
    print_table(["name", "flow", "pool", "entrypoint", "triggers", "schedules", "paused", "code"],
                [[d.name, d.flow_name, d.work_pool, d.entrypoint, str(len(d.triggers)),
                  str(len(d.schedules)), "yes" if d.paused else "no", (d.code_digest or "-")[:19]]
                 for d in items])


@deployment.command("inspect")
@click.argument("name")
@run_async
async def deployment_inspect(name: str) -> None:
    """Print a deployment (NAME or FLOW/NAME) as JSON."""
    _check_name(name)
    from events.bus import Bus

    async with await Bus.connect(_nats()) as bus:
        found = await find_deployment(bus, name)
    click.echo(found.model_dump_json(indent=2))


@deployment.command("run")
@click.argument("name")
@click.option("-p", "--param", "params", multiple=True, help="parameter key=value (value as JSON if it parses)")
@click.option("--param-json", default=None, help="parameters as one JSON object")
@click.option("--tag", "tags", multiple=True, help="extra tag for the run")
@click.option("--idempotency-key", default=None, help="a retried request with it makes no second run")
@click.option("--watch", is_flag=True, help="wait for the final state; print it and the result")
@click.option("--timeout", "max_wait", type=click.FloatRange(min=0), default=None,
              help="with --watch, seconds to wait at most")
@run_async
async def deployment_run(name: str, params: tuple[str, ...], param_json: str | None,
                         tags: tuple[str, ...], idempotency_key: str | None, watch: bool,
                         max_wait: float | None) -> None:
    """Ask for a run of deployment NAME (or FLOW/NAME); its id is printed at once.

    The parameters are checked against the flow's signature first: a bad one is named
    and nothing is run.
    """
    from events.bus import Bus
    from events.deployments import read_result, request_run, wait_flow_run
    from events.errors import NotFound
    from events.parameters import check_parameters, describe

    _check_name(name)
    parameters = parse_params(params, param_json)
    async with await Bus.connect(_nats()) as bus:
        # Unknown deployment or bad parameters: a clear error, no orphan request.
        found = await find_deployment(bus, name)
        name = found.name
        problems = check_parameters(found.parameter_schema, {**found.parameters, **parameters})
        if problems:
            fail(describe(name, problems) + "; nothing was run", 2)
        run_id = await request_run(bus, name, parameters, source="flowbus/cli", tags=tags,
                                   idempotency_key=idempotency_key)
        click.echo(f"flow run {run_id} requested for deployment {name}")
        if not watch:
            return
        run = await wait_flow_run(bus, run_id, max_wait if max_wait is not None else RESULT_WAIT_SECONDS)
        if run is None or not run.state.is_final():
            state = run.state.name if run else "not created yet"
            fail(f"flow run {run_id} is not finished after {max_wait}s (state: {state})", 3)
            return
        click.echo(f"flow run {run_id} {run.state.name}" +
                   (f": {run.state.message}" if run.state.message else ""))
        if run.state.name == "Completed":
            try:
                click.echo("result: " + json.dumps(await read_result(bus, run), default=str))
            except NotFound as exc:
                click.echo(f"result: not available ({exc})")
        else:
            raise SystemExit(1)


@deployment.command("pause")
@click.argument("name")
@run_async
async def deployment_pause(name: str) -> None:
    """Pause a deployment: its triggers and schedules create no runs."""
    _check_name(name)
    from events.bus import Bus
    from events.deployments import set_paused

    async with await Bus.connect(_nats()) as bus:
        name = (await find_deployment(bus, name)).name
        await set_paused(bus, name, True, source="flowbus/cli")
    click.echo(f"paused deployment {name}")


@deployment.command("resume")
@click.argument("name")
@run_async
async def deployment_resume(name: str) -> None:
    """Resume a paused deployment."""
    _check_name(name)
    from events.bus import Bus
    from events.deployments import set_paused

    async with await Bus.connect(_nats()) as bus:
        name = (await find_deployment(bus, name)).name
        await set_paused(bus, name, False, source="flowbus/cli")
    click.echo(f"resumed deployment {name}")


@deployment.command("delete")
@click.argument("name")
@run_async
async def deployment_delete(name: str) -> None:
    """Delete a deployment (its past runs stay)."""
    _check_name(name)
    from events.bus import Bus
    from events.deployments import delete_deployment

    async with await Bus.connect(_nats()) as bus:
        name = (await find_deployment(bus, name)).name
        await delete_deployment(bus, name, source="flowbus/cli")
    click.echo(f"deleted deployment {name}")


# --- flow runs --------------------------------------------------------------------------


@click.group("flow-run")
def flow_run() -> None:
    """List, inspect, read the logs of, cancel and resume flow runs."""


def _check_name(ref: str) -> str:
    """A deployment name (or FLOW/NAME) that can exist (a KV key); click.BadParameter otherwise."""
    from events.records import NAME_PATTERN

    flow, name = split_deployment(ref)
    if re.match(NAME_PATTERN, name) is None or (
            flow is not None and (not flow.strip() or flow.startswith(".") or "/" in flow)):
        raise click.BadParameter(
            f"{ref[:100]!r} is not a deployment name (letters, digits, '_', '.', '-'; up to 128)",
            param_hint="NAME")
    return name


@flow_run.command("ls")
@click.option("--deployment", "deployment_name", default=None, help="only runs of this deployment")
@click.option("--state", default=None, help="only runs in this state (e.g. Running)")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@run_async
async def flow_run_ls(deployment_name: str | None, state: str | None, limit: int, as_json: bool) -> None:
    """List flow runs, newest first."""
    from events.bus import Bus
    from events.states import FLOW_RUN_STATES

    if state is not None and state not in FLOW_RUN_STATES:
        raise click.BadParameter(f"unknown state {state!r}; one of {', '.join(FLOW_RUN_STATES)}",
                                 param_hint="--state")
    async with await Bus.connect(_nats()) as bus:
        runs = await all_runs(bus)
    runs = [r for r in runs
            if (deployment_name is None or deployment_name in (r.deployment_name, r.deployment_id))
            and (state is None or r.state.name == state)]
    runs.sort(key=lambda r: r.created, reverse=True)
    runs = runs[:limit]
    if as_json:
        click.echo(json.dumps([r.model_dump(mode="json") for r in runs], indent=2))
        return
    print_table(["id", "name", "deployment", "state", "start", "duration", "runs"],
                [[r.id[:8], r.name, r.deployment_name or "-", r.state.name, run_start(r),
                  run_duration(r), str(r.run_count)] for r in runs])


@flow_run.command("inspect")
@click.argument("run_id", metavar="ID")
@run_async
async def flow_run_inspect(run_id: str) -> None:
    """Print a flow run (ID, id prefix or run name) as JSON."""
    from events.bus import Bus

    async with await Bus.connect(_nats()) as bus:
        run = await find_run(bus, run_id)
    click.echo(run.model_dump_json(indent=2))


@flow_run.command("logs")
@click.argument("run_id", metavar="ID")
@click.option("--follow", is_flag=True, help="keep printing new lines until the run ends")
@run_async
async def flow_run_logs(run_id: str, follow: bool) -> None:
    """Print a flow run's logs (ID, id prefix or run name)."""
    import signal
    import threading

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT) if threading.current_thread() is threading.main_thread() else ()
    for signum in signals:
        # Stop between fetches, so the temporary consumer is always deleted.
        loop.add_signal_handler(signum, stop.set)
    try:
        await _print_logs(run_id, follow, stop)
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)


async def _print_logs(run_id: str, follow: bool, stop: asyncio.Event) -> None:
    from events.bus import Bus
    from events.deployments import get_flow_run

    async with await Bus.connect(_nats()) as bus:
        run_id = (await find_run(bus, run_id)).id

        async def finished() -> bool:
            run = await get_flow_run(bus, run_id)
            return run is None or run.state.is_final()

        await print_logs(bus, run_id, finished if follow else None, stop)


async def print_logs(bus: Bus, run_id: str, finished: Callable[[], Awaitable[bool]] | None,
                     stop: asyncio.Event | None = None) -> None:
    """Print a run's log lines: those stored, or with ``finished`` new ones too until
    the run is finished or ``stop`` is set."""
    from events.run_logs import CLI_READER, FETCH_BATCH, follow, run_log_reader

    async with run_log_reader(bus, run_id, CLI_READER) as reader:
        if finished is None:
            while records := await reader.read(FETCH_BATCH, wait=0.3):
                for record in records:
                    click.echo(format_log(record))
            return
        async for records in follow(reader, finished, stop or asyncio.Event()):
            for record in records:
                click.echo(format_log(record))


def format_log(record: dict[str, Any]) -> str:
    from events.logrecords import level_name

    when = str(record.get("timestamp", ""))[11:23]
    level = level_name(record.get("level", ""))
    return f"{when} | {level:<7} | {record.get('name', '')} - {record.get('message', '')}"


@flow_run.command("cancel")
@click.argument("run_id", metavar="ID")
@run_async
async def flow_run_cancel(run_id: str) -> None:
    """Cancel a flow run (ID, id prefix or run name): Cancelling while a runner stops it,
    or Cancelled if not started."""
    from events.bus import Bus
    from events.deployments import request_cancel

    async with await Bus.connect(_nats()) as bus:
        run_id = (await find_run(bus, run_id)).id
        run = await request_cancel(bus, run_id, source="flowbus/cli")
    click.echo(f"flow run {run_id} {run.state.name}")


@flow_run.command("resume")
@click.argument("run_id", metavar="ID")
@click.option("--input", "run_input", default=None, metavar="JSON",
              help="the input the paused run waits for, a JSON object")
@run_async
async def flow_run_resume(run_id: str, run_input: str | None) -> None:
    """Resume a Paused or Suspended flow run (ID, id prefix or run name)."""
    from events.bus import Bus
    from events.pauses import resume

    value = parse_run_input(run_input)
    async with await Bus.connect(_nats()) as bus:
        run_id = (await find_run(bus, run_id)).id
        run = await resume(bus, run_id, value, source="flowbus/cli")
    click.echo(f"flow run {run_id} resumed: {run.state.name}")


def parse_run_input(text: str | None) -> dict[str, Any] | None:
    """``--input``: a JSON object of bounded size; click.BadParameter saying what is wrong."""
    from events.jsonlimits import loads
    from events.run_input import MAX_INPUT_BYTES

    if text is None:
        return None
    if len(text.encode("utf-8", "surrogatepass")) > MAX_INPUT_BYTES:
        raise click.BadParameter(f"at most {MAX_INPUT_BYTES} bytes of JSON", param_hint="--input")
    try:
        value = loads(text.encode("utf-8", "surrogatepass"))
    except (UnicodeError, ValueError) as exc:
        raise click.BadParameter(f"not valid JSON: {str(exc)[:200]}", param_hint="--input") from None
    if not isinstance(value, dict):
        raise click.BadParameter(f"must be a JSON object, got {type(value).__name__}",
                                 param_hint="--input")
    return value
