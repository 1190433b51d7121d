"""Bounded shutdowns for the services and helper tasks that tests run in their own loop.

A shutdown that hangs must fail the test that caused it, naming what did not stop, instead
of eating the test's whole timeout (and on a loaded machine, the next tests' too).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import signal
from typing import Any

#: Long enough for a drain on a machine shared with other work; a hang still ends here.
SHUTDOWN_SECONDS = 30.0


async def wait_stopped(task: asyncio.Future[Any], *, what: str,
                       within: float = SHUTDOWN_SECONDS) -> Any:
    """Wait for ``task`` to end; cancel it and fail naming ``what`` when it takes too long."""
    try:
        return await asyncio.wait_for(asyncio.shield(task), within)
    except TimeoutError:
        stacks = _stacks()
        task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(task, 10)
        raise AssertionError(f"{what} did not stop within {within:.0f}s; where the loop's "
                             f"tasks wait:\n{stacks}") from None


def _stacks() -> str:
    """Where every task of the loop is waiting (to name the hang in the failure)."""
    out = []
    for other in asyncio.all_tasks():
        buffer = io.StringIO()
        other.print_stack(limit=8, file=buffer)
        out.append(buffer.getvalue())
    return "\n".join(out)[-20000:]


async def stop_service(stop: asyncio.Event, task: asyncio.Future[Any], *, what: str,
                       within: float = SHUTDOWN_SECONDS) -> Any:
    """Set ``stop`` and wait, bounded, for the service's task to end (its result or error)."""
    stop.set()
    return await wait_stopped(task, what=what, within=within)


async def stop_process(proc: asyncio.subprocess.Process, *, what: str,
                       sig: int = signal.SIGTERM, within: float = SHUTDOWN_SECONDS) -> None:
    """Signal ``proc`` (if it still runs) and wait, bounded, for it to exit, reading what
    is left of its pipes; kill it and fail naming ``what`` when it does not exit."""
    if proc.returncode is not None:
        return
    proc.send_signal(sig)
    try:
        await asyncio.wait_for(proc.communicate(), within)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"{what} did not exit within {within:.0f}s of signal {sig}") from None
