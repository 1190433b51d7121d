"""The orchestrator's answers to the API's cancel and resume, for tests of the gateway alone.

The gateway does not write flow-run records: it asks the leading orchestrator
(events/control.py). Tests that start a gateway without an orchestrator process run
the orchestrator's real :class:`~orchestrator.control.ControlDesk` on the test's bus.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from events.bus import Bus
from orchestrator.control import ControlDesk
from orchestrator.metrics import Metrics


@contextlib.asynccontextmanager
async def control_desk(bus: Bus) -> AsyncIterator[ControlDesk]:
    desk = ControlDesk(bus, Metrics())
    halt = asyncio.Event()
    task = asyncio.create_task(desk.serve(halt))
    try:
        async with asyncio.timeout(30):
            while not desk.serving.is_set():
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
        yield desk
    finally:
        halt.set()
        try:
            await asyncio.wait_for(task, 15)
        except TimeoutError:
            task.cancel()
