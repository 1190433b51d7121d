"""The CLI takes what a person has at hand: short ids, run names, FLOW/NAME, level names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from events.bus import Bus
from flowbus.cli.deploy_cmd import format_log
from tests.orchestrator.support import flow_runs, start, wait_until

from .conftest import Cli


@pytest.mark.timeout(240)  # deploys, then an orchestrator; a loaded machine is slow at both
async def test_runs_are_found_by_short_id_and_by_name(flowbus_cli: Cli, project: Path,
                                                      bus: Bus) -> None:
    assert (await flowbus_cli("deploy", "-f", str(project / "flowbus.yaml"))).exit_code == 0
    orch = await start(bus)
    try:
        async def consuming() -> bool:  # a loaded machine may take longer than start() waits
            return orch.orch.consuming.is_set()

        await wait_until(consuming, within=60)
        asked = await flowbus_cli("deployment", "run", "greet/hello", "-p", "times=2")
        assert asked.exit_code == 0, asked.output
        run_id = asked.output.split()[2]

        async def created() -> bool:
            return any(r.id == run_id for r in await flow_runs(bus))

        await wait_until(created, within=60)
    finally:
        await orch.close()
    [run] = [r for r in await flow_runs(bus) if r.id == run_id]
    for ref in (run_id, run_id[:8], run.name):
        shown = await flowbus_cli("flow-run", "inspect", ref)
        assert shown.exit_code == 0, shown.output
        assert json.loads(shown.stdout)["id"] == run_id
    typo = await flowbus_cli("flow-run", "inspect", run.name[:-1] + "x")
    assert typo.exit_code == 1 and f"did you mean {run.name!r}?" in typo.stderr
    too_short = await flowbus_cli("flow-run", "inspect", run_id[:3])
    assert too_short.exit_code == 1 and "not found" in too_short.stderr
    table = await flowbus_cli("flow-run", "ls")
    header = table.stdout.splitlines()[1]
    assert all(c in header for c in ("id", "name", "state", "start", "duration"))
    row = next(line for line in table.stdout.splitlines() if run_id[:8] in line)
    assert run_id not in row  # the short id, not the whole one
    # Not started: it shows when it is (or was) due, not a bare timestamp.
    assert "due " in row or "in " in row


def test_log_levels_are_printed_by_name() -> None:
    line = format_log({"timestamp": "2026-01-01T12:00:00.123+00:00", "level": 20,
                       "name": "flowbus.flow_runs", "message": "hi"})
    assert line == "12:00:00.123 | INFO    | flowbus.flow_runs - hi"
    assert "| 55 " in format_log({"level": 55, "message": "x"})


async def test_version_flag(flowbus_cli: Cli) -> None:
    result = await flowbus_cli("--version")
    assert result.exit_code == 0 and result.output.startswith("flowbus ")
