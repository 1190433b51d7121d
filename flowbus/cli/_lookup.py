"""Finding what a user named: deployments by name or ``flow/deployment``, flow runs by
id, unique id prefix or run name, each with a "did you mean" when nothing matches."""

from __future__ import annotations

import asyncio
import difflib
from typing import Any

import click

from events.errors import NotFound

READ_CONCURRENCY = 64
SHORT_ID_MIN = 4


def did_you_mean(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def split_deployment(ref: str) -> tuple[str | None, str]:
    """``flow/deployment`` (Prefect's form) or ``deployment`` -> (flow or None, deployment)."""
    flow, sep, name = ref.rpartition("/")
    return (flow or None, name) if sep else (None, ref)


async def find_deployment(bus: Any, ref: str) -> Any:
    """The deployment ``ref`` names; NotFound with a suggestion otherwise."""
    from events.deployments import get_deployment, list_deployments

    flow, name = split_deployment(ref)
    try:
        found = await get_deployment(bus, name)
    except NotFound:
        known = [d.name for d in await list_deployments(bus)]
        raise NotFound(f"deployment {name!r} not found{did_you_mean(name, known)} "
                       "(see `flowbus deployment ls`)") from None
    if flow is not None and flow != found.flow_name:
        raise NotFound(f"deployment {name!r} runs flow {found.flow_name!r}, not {flow!r}")
    return found


async def all_runs(bus: Any) -> list[Any]:
    """Every flow-run record (bounded concurrent reads)."""
    from events.records import FlowRun

    kv = await bus.kv(bus.layout.flow_runs)
    keys = await kv.keys()
    runs: list[FlowRun] = []
    for start in range(0, len(keys), READ_CONCURRENCY):
        entries = await asyncio.gather(*(kv.get(k) for k in keys[start:start + READ_CONCURRENCY]))
        runs.extend(FlowRun.model_validate_json(e.value) for e in entries if e is not None)
    return runs


async def find_run(bus: Any, ref: str) -> Any:
    """The flow run ``ref`` names: its id, a unique prefix of it, or its run name."""
    from events.deployments import get_flow_run

    if not ref or any(c in ref for c in " .*>\t\n"):
        raise click.BadParameter(f"{ref[:100]!r} is not a flow-run id or name", param_hint="ID")
    exact = await get_flow_run(bus, ref)
    if exact is not None:
        return exact
    runs = await all_runs(bus)
    matches = [r for r in runs if r.name == ref]
    if not matches and len(ref) >= SHORT_ID_MIN:
        matches = [r for r in runs if r.id.startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        shown = ", ".join(f"{r.id[:8]} ({r.name})" for r in matches[:5])
        raise NotFound(f"{ref!r} matches {len(matches)} flow runs: {shown}; give more of the id")
    hint = did_you_mean(ref, [r.name for r in runs])
    raise NotFound(f"flow run {ref!r} not found (no id, id prefix or name matches){hint} "
                   "(see `flowbus flow-run ls`)")
