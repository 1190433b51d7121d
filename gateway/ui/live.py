"""Server-Sent Events for live pages: the run list's changes and a run's logs and state.

The pages use htmx's SSE extension: the run list re-fetches its rows on a ``runs``
event; a run page appends each ``log`` event's HTML to its log view, swaps its state
badge on ``state`` and closes the stream on ``end``. Each stream holds one of the
gateway's stream slots and ends when the gateway shuts down.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from events.records import FlowRun
from events.run_logs import UI_READER, run_log_reader
from gateway.context import closing_of, gateway_of
from gateway.runindex import RUN_INDEX
from gateway.ui import runs_view
from gateway.ui.pages import page
from gateway.ui.render import environment
from gateway.ui.session import Viewer

_DEBOUNCE_SECONDS = 0.3
_LOG_POLL_SECONDS = 0.5


async def _open(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={
        "Content-Type": "text/event-stream", "Cache-Control": "no-store",
        "X-Accel-Buffering": "no",
    })
    await response.prepare(request)
    return response


def _frame(event: str, html: str) -> bytes:
    data = "\n".join(f"data: {line}" for line in (html.splitlines() or [""]))
    return f"event: {event}\n{data}\n\n".encode()


@page
async def runs_stream(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    """``runs`` whenever any run is created or changes (at most every 0.3 s)."""
    gateway = gateway_of(request)
    index = request.app[RUN_INDEX]
    closing = closing_of(request)
    beat = gateway.settings.stream_heartbeat_seconds
    with gateway.stream_slot(), index.changes() as changes:
        response = await _open(request)
        await response.write(b": connected\n\n")
        while not closing.is_set():
            try:
                await asyncio.wait_for(changes.get(), beat)
            except TimeoutError:
                await response.write(b": keep-alive\n\n")
                continue
            await asyncio.sleep(_DEBOUNCE_SECONDS)
            while not changes.empty():
                changes.get_nowait()
            await response.write(_frame("runs", "changed"))
    return response


@page
async def run_stream(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    """A run's log lines as they arrive (from the first), its state on change, ``end`` once final."""
    run = await runs_view.load_run(request)
    gateway = gateway_of(request)
    bus = gateway.bus
    closing = closing_of(request)
    kv = await gateway.kv(bus.layout.flow_runs)
    lines_tpl = environment().get_template("_log_lines.html")
    badge_tpl = environment().get_template("_state.html")
    with gateway.stream_slot():
        async with run_log_reader(bus, run.id, UI_READER) as reader:
            response = await _open(request)
            await response.write(b": connected\n\n")
            state = run.state
            # The page was rendered before this stream opened: the run may have changed
            # in between (even become final, after which no change is left to send).
            await response.write(_frame("state", badge_tpl.render(state=state)))
            while not closing.is_set():
                lines = await runs_view.drain(reader, runs_view.LOG_PAGE, _LOG_POLL_SECONDS)
                if lines:
                    await response.write(_frame("log", lines_tpl.render(lines=lines)))
                    continue
                entry = await kv.get(run.id)
                if entry is None:
                    break
                current = FlowRun.model_validate_json(entry.value)
                if current.state != state:
                    state = current.state
                    await response.write(_frame("state", badge_tpl.render(state=state)))
                if state.is_final():
                    # Lines published just before the final state are read first.
                    lines = await runs_view.drain(reader, runs_view.LOG_PAGE, _LOG_POLL_SECONDS)
                    if lines:
                        await response.write(_frame("log", lines_tpl.render(lines=lines)))
                    await response.write(_frame("end", "final"))
                    break
    return response
