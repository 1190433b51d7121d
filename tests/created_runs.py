"""Flow runs made by the code that makes them in the product, for tests that need runs.

:func:`created_run` asks the orchestrator's own run creation (``RunCreator``, with a
clock set to ``created``) for a run: it is stored ``Scheduled`` (or ``Failed`` when
``refused``, as a request whose parameters cannot run is), its job and its Scheduled
event are published. Later states come from the product too: the API's cancel and
delete (answered by an orchestrator's control desk), or a runner.
"""

from __future__ import annotations

from datetime import UTC, datetime

from events.bus import Bus
from events.records import Deployment, FlowRun
from orchestrator.creation import RunCreator, RunRequest
from orchestrator.metrics import Metrics
from orchestrator.settings import OrchestratorSettings

T0 = datetime(2026, 1, 1, tzinfo=UTC)


async def created_run(bus: Bus, run_id: str, *, deployment: str = "etl", flow: str = "f",
                      tags: list[str] | None = None, name: str | None = None,
                      created: datetime = T0, refused: str | None = None) -> FlowRun:
    runs = await bus.kv(bus.layout.flow_runs)
    slots = await bus.kv(bus.layout.concurrency)
    creator = RunCreator(bus, runs, slots, OrchestratorSettings(), Metrics(), lambda: created)
    return await creator.create(RunRequest(
        flow_run_id=run_id, deployment=Deployment(name=deployment, flow_name=flow),
        origin="tests", parameters={}, expected_start_time=created,
        idempotency_key=f"tests:{run_id}", tags=tags or [], name=name or run_id,
        refused=refused,
    ))
