"""``flowbus task-worker`` (execute background task runs) and ``flowbus task-run`` (see them)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import click

from events.messages import plain
from flowbus.cli._common import (
    LOG_LEVEL,
    default_log_level,
    fail,
    nats_settings,
    print_table,
    run_async,
)


def _worker_settings(**overrides: Any) -> Any:
    from pydantic import ValidationError

    from events.background import TaskWorkerSettings

    try:
        return TaskWorkerSettings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        name = str(first["loc"][0]) if first["loc"] else "limit"
        fail(f"setting FLOWBUS_TASK_WORKER_{name.upper()} (--{name.replace('_', '-')}): "
             f"{plain(first)}", 2)
    raise AssertionError("unreachable")


@click.command("task-worker")
@click.argument("entrypoints", nargs=-1, required=True, metavar="MODULE:TASK...")
@click.option("--limit", type=int, default=None, help="task runs at once  [default: 10]")
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="directory the entrypoints are imported from  [default: .]")
@LOG_LEVEL
def task_worker(entrypoints: tuple[str, ...], limit: int | None, root: Path | None,
                log_level: str | None) -> None:
    """Execute background runs (Task.delay) of the named tasks until SIGTERM or Ctrl-C."""
    import logging

    nats = nats_settings()
    settings = _worker_settings(limit=limit)
    from events.errors import FlowbusError
    from flowbus.task_worker import aserve, load_task

    tasks = []
    for entrypoint in entrypoints:
        try:
            tasks.append(load_task(entrypoint, root))
        except FlowbusError as exc:
            fail(f"{entrypoint[:200]}: {exc}", 2)
        except Exception as exc:  # the user's module failed to import
            fail(f"{entrypoint[:200]}: importing it raised {type(exc).__name__}: {exc}", 2)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s | %(levelname)-7s | %(name)s - %(message)s"))
    logger = logging.getLogger("flowbus.task_worker")
    logger.addHandler(handler)
    logger.propagate = False  # not printed again by the run loggers' console handler
    logger.setLevel((log_level or default_log_level()).upper())
    try:
        asyncio.run(aserve(*tasks, settings=settings, nats=nats))
    except FlowbusError as exc:
        fail(str(exc))


@click.group("task-run")
def task_run() -> None:
    """Background task runs (Task.delay)."""


STATES = ("Scheduled", "Running", "Completed", "Cached", "Failed", "Crashed", "Cancelled")


@task_run.command("ls")
@click.option("--task", "task_key", default=None, help="only runs of this task key or name")
@click.option("--state", type=click.Choice(STATES), default=None, help="only runs in this state")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@run_async
async def task_run_ls(task_key: str | None, state: str | None, limit: int, as_json: bool) -> None:
    """List background task runs, newest first."""
    from events.background import all_task_runs
    from events.bus import Bus

    async with await Bus.connect(nats_settings()) as bus:
        runs = await all_task_runs(await bus.kv(bus.layout.task_runs))
    runs = [r for r in runs if (task_key is None or task_key in (r.task_key, r.task_name))
            and (state is None or r.state.name == state)][:limit]
    if as_json:
        click.echo(json.dumps([r.model_dump(mode="json") for r in runs], indent=2))
        return
    print_table(["id", "name", "task", "state", "attempts", "worker"],
                [[r.id[:8], r.name, r.task_key, r.state.name, str(r.run_count), r.worker_id or "-"]
                 for r in runs])


def _check_id(run_id: str) -> None:
    import re

    from events.background import TASK_RUN_ID_PATTERN

    if re.fullmatch(TASK_RUN_ID_PATTERN, run_id) is None:
        raise click.BadParameter(f"{run_id[:80]!r} is not a task-run id", param_hint="ID")


@task_run.command("inspect")
@click.argument("run_id", metavar="ID")
@run_async
async def task_run_inspect(run_id: str) -> None:
    """Print a background task run (its full id) as JSON."""
    from events.background import TaskRunRecord
    from events.bus import Bus

    _check_id(run_id)
    async with await Bus.connect(nats_settings()) as bus:
        entry = await (await bus.kv(bus.layout.task_runs)).get(run_id)
    if entry is None:
        fail(f"no task run {run_id!r}")
        return
    click.echo(TaskRunRecord.decode(entry.value).model_dump_json(indent=2))


@task_run.command("logs")
@click.argument("run_id", metavar="ID")
@click.option("--follow", is_flag=True, help="keep printing new lines until the run ends")
@run_async
async def task_run_logs(run_id: str, follow: bool) -> None:
    """Print a background task run's logs (its full id), oldest first."""
    from events.background import TaskRunRecord
    from events.bus import Bus
    from flowbus.cli.deploy_cmd import print_logs

    _check_id(run_id)
    async with await Bus.connect(nats_settings()) as bus:
        kv = await bus.kv(bus.layout.task_runs)
        if await kv.get(run_id) is None:
            fail(f"no task run {run_id!r}")
            return

        async def finished() -> bool:
            entry = await kv.get(run_id)
            return entry is None or TaskRunRecord.decode(entry.value).state.is_final()

        await print_logs(bus, run_id, finished if follow else None)


@task_run.command("cancel")
@click.argument("run_id", metavar="ID")
@run_async
async def task_run_cancel(run_id: str) -> None:
    """Cancel a background task run: a queued one never starts, a running one is stopped
    by its worker."""
    from events.background import NotCancellable, cancel_task_run
    from events.bus import Bus
    from events.errors import NotFound

    _check_id(run_id)
    async with await Bus.connect(nats_settings()) as bus:
        kv = await bus.kv(bus.layout.task_runs)
        try:
            record = await cancel_task_run(kv, run_id, "cancelled from the command line", bus=bus)
        except NotFound:
            fail(f"no task run {run_id!r}")
            return
        except NotCancellable as exc:
            fail(str(exc))
            return
    click.echo(f"task run {record.id} is {record.state.name}")
