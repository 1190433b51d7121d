"""What a run's page shows of its past: states, task runs, artifacts and the runs it caused.

The flow-run record holds only the current state; its history is in the state events
(``flowbus.flow-run.<State>``, subject ``flowbus.flow-run.<id>``) and the task runs'
events (``flowbus.task-run.<State>``, ``data.flow_run_id``). They are read from the
events stream from the run's creation on, up to :data:`MAX_EVENTS` events (a bound on
the page's cost on a busy bus: past it the page says the history is cut short).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from markupsafe import Markup, escape
from pydantic import ValidationError

from events.artifacts import ArtifactRecord, list_artifacts
from events.bus import Bus
from events.cloudevent import CloudEvent
from events.records import FlowRun
from events.runs import FlowRunStateEvent

MAX_EVENTS = 20_000
MAX_TASK_RUNS = 200
MAX_TRIGGERED = 50
_SLACK = timedelta(seconds=2)  # events are stamped by other clocks than the record's
_FINAL = {"COMPLETED", "FAILED", "CANCELLED", "CRASHED"}


@dataclass(frozen=True, slots=True)
class StatePoint:
    """One state the run (or a task run) entered."""

    name: str
    type: str
    timestamp: datetime
    message: str | None


@dataclass(slots=True)
class TaskRunView:
    """A task run of the flow run, from its state events."""

    id: str
    name: str
    states: list[StatePoint] = field(default_factory=list)

    @property
    def state(self) -> StatePoint:
        return self.states[-1]

    @property
    def start(self) -> datetime:
        running = [s.timestamp for s in self.states if s.type == "RUNNING"]
        return running[0] if running else self.states[0].timestamp

    @property
    def end(self) -> datetime | None:
        return self.state.timestamp if self.state.type in _FINAL else None


@dataclass(slots=True)
class RunHistory:
    """The states, task runs and caused-event ids of one run, as far as they were read."""

    states: list[StatePoint] = field(default_factory=list)
    task_runs: list[TaskRunView] = field(default_factory=list)
    event_ids: list[str] = field(default_factory=list)
    cut_short: bool = False


def _stamp(value: Any, fallback: datetime | None) -> datetime | None:
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return fallback
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return fallback


def _point(data: Any, event: CloudEvent) -> StatePoint | None:
    state = data.get("state") if isinstance(data, dict) else None
    if not isinstance(state, dict):
        return None
    when = _stamp(state.get("timestamp"), event.time)
    if when is None:
        return None
    message = state.get("message")
    return StatePoint(name=str(state.get("name") or event.type.rsplit(".", 1)[-1]),
                      type=str(state.get("type") or ""), timestamp=when,
                      message=message if isinstance(message, str) else None)


async def read_history(bus: Bus, run: FlowRun) -> RunHistory:
    """The run's recorded states, its task runs and the ids of its state events."""
    history = RunHistory()
    subject = f"flowbus.flow-run.{run.id}"
    tasks: dict[str, TaskRunView] = {}
    seen = 0
    async for event in bus.stored("flowbus.*", since=run.created - _SLACK, most=MAX_EVENTS):
        seen += 1
        if event.type.startswith("flowbus.flow-run.") and event.subject == subject:
            history.event_ids.append(event.id)
            # The record's own transitions (the SDK inside the runner also announces
            # its in-process states, with another shape): only those are the timeline.
            try:
                FlowRunStateEvent.model_validate(event.data)
            except ValidationError:
                continue
            point = _point(event.data, event)
            if point is not None and point not in history.states:
                history.states.append(point)
        elif (event.type.startswith("flowbus.task-run.") and isinstance(event.data, dict)
              and event.data.get("flow_run_id") == run.id):
            _add_task_state(tasks, event)
    history.cut_short = seen >= MAX_EVENTS
    # Kept in the stream's order, which is the order of the record's writes: a state's
    # timestamp is when its writer made it, which can come before the previous write.
    history.task_runs = sorted(tasks.values(), key=lambda t: t.start)
    return history


def _add_task_state(tasks: dict[str, TaskRunView], event: CloudEvent) -> None:
    data = event.data
    task_id = str(data.get("id") or "")
    point = _point(data, event)
    if not task_id or point is None:
        return
    view = tasks.get(task_id)
    if view is None:
        if len(tasks) >= MAX_TASK_RUNS:
            return
        view = tasks[task_id] = TaskRunView(id=task_id, name=str(data.get("name") or task_id))
    view.states.append(point)
    view.states.sort(key=lambda s: s.timestamp)


async def run_artifacts(bus: Bus, run_id: str) -> list[ArtifactRecord]:
    """The artifacts the run created, newest first."""
    return await list_artifacts(await bus.kv(bus.layout.artifacts), flow_run_id=run_id)


@dataclass(frozen=True, slots=True)
class Bar:
    """One task run drawn in the Gantt chart (coordinates in per cent of the width)."""

    task: TaskRunView
    x: float
    width: float
    y: int
    state_class: str


ROW_HEIGHT = 22


def gantt(run: FlowRun, tasks: list[TaskRunView], now: datetime | None = None) -> list[Bar]:
    """Bars for the task runs on the flow run's time axis (start to end, or now)."""
    if not tasks:
        return []
    now = now or datetime.now(UTC)
    start = min([t.start for t in tasks] + ([run.start_time] if run.start_time else []))
    end = max([t.end or now for t in tasks] + ([run.end_time] if run.end_time else []))
    span = max((end - start).total_seconds(), 1e-3)
    bars = []
    for i, task in enumerate(tasks):
        x = (task.start - start).total_seconds() / span * 100
        width = ((task.end or now) - task.start).total_seconds() / span * 100
        bars.append(Bar(task=task, x=round(max(0.0, x), 3),
                        width=round(max(0.4, min(width, 100 - x)), 3),
                        y=i * ROW_HEIGHT, state_class=f"state-{task.state.type.lower()}"))
    return bars


def table_of(data: Any) -> tuple[list[str], list[list[Any]]] | None:
    """A table artifact's columns and rows (a list of rows or a dict of columns), else None."""
    if isinstance(data, list) and data and all(isinstance(r, dict) for r in data):
        columns = list(dict.fromkeys(k for row in data for k in row))
        return [str(c) for c in columns], [[row.get(c, "") for c in columns] for row in data]
    if isinstance(data, list) and all(isinstance(r, list) for r in data):
        width = max((len(r) for r in data), default=0)
        return [str(i) for i in range(width)], [list(r) for r in data]
    if isinstance(data, dict) and data and all(isinstance(v, list) for v in data.values()):
        columns = [str(c) for c in data]
        height = max(len(v) for v in data.values())
        return columns, [[v[i] if i < len(v) else "" for v in data.values()] for i in range(height)]
    return None


def safe_link(value: Any) -> str | None:
    """A link artifact's URL when it is http(s) (never ``javascript:`` and the like)."""
    if isinstance(value, str) and value.lower().startswith(("http://", "https://")):
        return value
    return None


_MD_LINK = re.compile(r"\[([^\]\n]{1,500})\]\((https?://[^)\s]{1,2000})\)")


def markdown_text(text: Any) -> Markup:
    """Markdown shown as text, escaped, with its ``[text](http...)`` links made links.

    No other markdown is interpreted: the page renders no HTML from an artifact.
    """
    escaped = str(escape(str(text)))
    return Markup(_MD_LINK.sub(r'<a href="\2" rel="noopener noreferrer">\1</a>', escaped))
