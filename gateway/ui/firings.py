"""An automation's last firings, read from the events its orchestrator publishes.

The orchestrator records no firing by automation: its delivery records are keyed by
a hash of the action, and say nothing of the automation. What names the automation
is the events it publishes (``events.automations``): ``flowbus.automation.triggered``
or ``.resolved`` when it fires, then one ``.action.executed`` or ``.action.failed``
per action, each naming the triggering event. They are read from the events stream,
oldest first, from the start of a window: the last 24 hours, or a shorter window
when that holds more than :data:`MAX_READ` automation events, so the newest are read.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from events.automations import EVENT_EXECUTED, EVENT_FAILED, EVENT_RESOLVED, EVENT_TRIGGERED
from events.bus import Bus
from events.cloudevent import CloudEvent
from gateway.ui.events_view import AUTOMATION_EVENTS

WINDOWS = (timedelta(hours=24), timedelta(hours=1), timedelta(minutes=5))
MAX_READ = 5000  # automation events read per window, at most
LAST = 5  # firings kept per automation


@dataclass(slots=True)
class Firing:
    """One firing of an automation and what its actions did."""

    kind: str  # "triggered", "resolved", or "action" (action events whose firing was not read)
    time: datetime | None
    event: dict[str, Any]  # the triggering event: id, source, type
    done: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def outcome(self) -> str:
        if self.failures:
            return "failed"
        return "done" if self.done else "no action outcome yet"

    @property
    def event_link(self) -> str | None:
        if not self.event.get("id") or not self.event.get("type"):
            return None
        stamp = self.time.isoformat() if self.time else ""
        return "/ui/event?" + urlencode({"type": self.event["type"], "id": self.event["id"],
                                         "time": stamp})


@dataclass(slots=True)
class Firings:
    """The last firings of each automation (newest first), and the window read."""

    by_automation: dict[str, list[Firing]]
    window: timedelta
    cut: bool

    @property
    def window_label(self) -> str:
        minutes = int(self.window.total_seconds() // 60)
        return f"{minutes // 60} hours" if minutes >= 120 else (
            "hour" if minutes == 60 else f"{minutes} minutes")


def _ref(data: dict[str, Any]) -> dict[str, Any]:
    ref = data.get("triggering_event")
    return {k: str(v) for k, v in ref.items() if k in ("id", "source", "type")} \
        if isinstance(ref, dict) else {}


def _add(kept: dict[str, deque[Firing]], event: CloudEvent) -> None:
    data = event.data if isinstance(event.data, dict) else {}
    automation_id = data.get("automation_id")
    if not isinstance(automation_id, str):
        return
    firings = kept.setdefault(automation_id, deque(maxlen=LAST))
    ref = _ref(data)
    if event.type in (EVENT_TRIGGERED, EVENT_RESOLVED):
        firings.append(Firing(event.type.rsplit(".", 1)[-1], event.time, ref))
        return
    if event.type not in (EVENT_EXECUTED, EVENT_FAILED):
        return
    firing = next((f for f in reversed(firings) if f.event.get("id") == ref.get("id")
                   and f.event.get("source") == ref.get("source")), None)
    if firing is None:  # its firing came before the window, or a redrive
        firing = Firing("action", event.time, ref)
        firings.append(firing)
    if event.type == EVENT_EXECUTED:
        firing.done += 1
    else:
        firing.failures.append(str(data.get("reason") or "failed")[:500])


async def last_firings(bus: Bus, now: datetime | None = None) -> Firings:
    """The last :data:`LAST` firings of every automation that fired in the window read."""
    now = now or datetime.now(UTC)
    kept: dict[str, deque[Firing]] = {}
    cut = False
    window = WINDOWS[0]
    for window in WINDOWS:
        kept = {}
        read = 0
        async for event in bus.stored(AUTOMATION_EVENTS, since=now - window, most=MAX_READ):
            read += 1
            _add(kept, event)
        cut = read >= MAX_READ
        if not cut:
            break
    return Firings({k: list(reversed(v)) for k, v in kept.items()}, window, cut)
