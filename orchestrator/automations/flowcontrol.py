"""Debounce, throttle and batch as pure functions over a small JSON state.

The state of one automation bucket (``for_each`` values) lives in
``flowbus-automation-state`` under ``fc.<automation id>.<bucket>``, written by
compare-and-set, so a restart or failover continues where it was. ``seen`` keeps the
last event identities counted, so a redelivered event is not counted twice.

- debounce: every event pushes ``due`` to now + ``seconds`` and keeps the latest
  event; when ``due`` passes, the automation fires once with that event.
- throttle: firings in the last ``seconds`` are kept; under ``limit`` it fires at
  once; over it the event is dropped, or (``excess: delay``) queued (at most
  ``max_delayed``) and fired as the window frees up.
- batch: events are collected; ``size`` of them, or ``seconds`` after the first,
  fire once with all of them (the templates see ``events``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from events.automations import Batch, Debounce, Throttle

State = dict[str, Any]
SEEN_KEPT = 256
# A batch whose state grows past this fires early: a KV value must stay under 1 MiB.
MAX_STATE_CHARS = 512 * 1024


def _t(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _fresh(state: State | None) -> State:
    return {"seen": [], **(state or {})}


def _seen(state: State, key: str) -> bool:
    return key in state.get("seen", ())


def _remember(state: State, key: str) -> None:
    state["seen"] = [*state.get("seen", ()), key][-SEEN_KEPT:]


Fired = list[dict[str, Any]]  # each: {"key": firing key, "events": [event, ...]}


def step(config: Debounce | Throttle | Batch, state: State | None, key: str, event: dict[str, Any],
         now: datetime) -> tuple[State, Fired]:
    """Count one event; the new state and the firings it causes at once."""
    new = _fresh(state)
    if _seen(new, key):
        return new, []
    _remember(new, key)
    if isinstance(config, Debounce):
        new.update(due=(now + timedelta(seconds=config.seconds)).isoformat(), event=event, key=key)
        return new, []
    if isinstance(config, Throttle):
        return _throttle(config, new, key, event, now)
    events = [*new.get("events", ()), event]
    new.setdefault("first", key)
    if len(events) >= config.size or len(str(events)) > MAX_STATE_CHARS:
        fired = [{"key": f"batch:{new['first']}", "events": events}]
        new.update(events=[], due=None)
        new.pop("first", None)
        return new, fired
    if not new.get("due"):
        new["due"] = (now + timedelta(seconds=config.seconds)).isoformat()
    new["events"] = events
    return new, []


def _window(config: Throttle, state: State, now: datetime) -> list[str]:
    start = now - timedelta(seconds=config.seconds)
    return [t for t in state.get("times", ()) if _t(t) > start]


def _throttle(config: Throttle, state: State, key: str, event: dict[str, Any],
              now: datetime) -> tuple[State, Fired]:
    times = _window(config, state, now)
    queued = list(state.get("queued", ()))
    if len(times) < config.limit and not queued:
        state.update(times=[*times, now.isoformat()])
        return state, [{"key": key, "events": [event]}]
    if config.excess == "delay" and len(queued) < config.max_delayed:
        queued.append({"key": key, "event": event})
        state.update(times=times, queued=queued, due=_next_free(config, times).isoformat())
    else:
        state.update(times=times, dropped=int(state.get("dropped", 0)) + 1)
    return state, []


def _next_free(config: Throttle, times: list[str]) -> datetime:
    return _t(times[0]) + timedelta(seconds=config.seconds)


def expire(config: Debounce | Throttle | Batch, state: State, now: datetime) -> tuple[State, Fired]:
    """Fire what is due at ``now`` (a tick); the new state and its firings."""
    due = state.get("due")
    if not due or _t(due) > now:
        return state, []
    new = dict(state)
    if isinstance(config, Debounce):
        new.update(due=None, event=None)
        return new, [{"key": f"debounce:{state['key']}", "events": [state["event"]]}]
    if isinstance(config, Batch):
        events = list(new.get("events", ()))
        fired = [{"key": f"batch:{new.get('first')}", "events": events}] if events else []
        new.update(events=[], due=None)
        new.pop("first", None)
        return new, fired
    times = _window(config, new, now)
    queued = list(new.get("queued", ()))
    fired = []
    while queued and len(times) < config.limit:
        item = queued.pop(0)
        times.append(now.isoformat())
        fired.append({"key": item["key"], "events": [item["event"]]})
    new.update(times=times, queued=queued, due=_next_free(config, times).isoformat() if queued else None)
    return new, fired


def due_of(state: State | None) -> datetime | None:
    if not state or not state.get("due"):
        return None
    return _t(state["due"])
