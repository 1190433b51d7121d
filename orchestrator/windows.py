"""Trigger state as pure functions: (definition, state, event) -> (new state, fired).

The state of one trigger node (for one ``for_each`` bucket) is a small JSON dict kept
in ``flowbus-trigger-state``; :mod:`orchestrator.evaluator` reads it, calls these
functions inside a compare-and-set loop, and writes it back. Every function also
remembers the last event identities it counted (``seen``), so a redelivered event
is not counted twice, and which event completed the last firing (``fired_by``), so
a redelivery of that event fires again and the run creation (idempotent) completes.

Reactive windows slide: the counted event times are kept (at most ``threshold``),
an event older than the newest minus ``within`` drops out, and an event that arrives
late (out of order) still counts if it lies in the window. ``within`` = 0 means no
time limit. Window edges are inclusive.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from events.triggers import CompoundTrigger, EventTrigger, SequenceTrigger

State = dict[str, Any]
SEEN_KEPT = 64


def _t(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _seen(state: State, key: str) -> bool:
    return key in state.get("seen", ())


def _remember(state: State, key: str) -> None:
    seen = [*state.get("seen", ()), key]
    state["seen"] = seen[-SEEN_KEPT:]


def _redelivery(state: State | None, key: str) -> tuple[State, bool] | None:
    """For an event already counted: the unchanged state and whether it fired."""
    if state is not None and _seen(state, key):
        return state, state.get("fired_by") == key
    return None


def step_reactive(
    trigger: EventTrigger, state: State | None, key: str, when: datetime,
    *, is_expect: bool, is_after: bool,
) -> tuple[State, bool]:
    """Count one event for a Reactive trigger; True when the threshold is reached."""
    again = _redelivery(state, key)
    if again is not None:
        return again
    new: State = dict(state or {"armed": not trigger.after, "times": []})
    _remember(new, key)
    if is_after and trigger.after:
        new["armed"] = True
    if not (is_expect and new.get("armed")):
        return new, False
    times = sorted([*map(_t, new.get("times", ())), when])
    if trigger.within > timedelta(0):
        newest = times[-1]
        times = [t for t in times if newest - t <= trigger.within]
        if when not in times:  # this late event lies before the window: it does not count
            return new, False
    if len(times) >= trigger.threshold:
        new["times"] = []
        new["armed"] = not trigger.after
        new["fired_by"] = key
        return new, True
    new["times"] = [t.isoformat() for t in times[-trigger.threshold :]]
    return new, False


def step_proactive(
    trigger: EventTrigger, state: State | None, key: str, now: datetime,
    *, is_expect: bool, is_after: bool,
) -> State | None:
    """Note one event for a Proactive trigger (it never fires on an event).

    An ``after`` event (or, without ``after``, the first expected event of a bucket)
    opens a window ending at ``now + within``. Enough expected events close it
    satisfied: with ``after`` the bucket waits for the next ``after``; without, a new
    window opens at once (a heartbeat keeps it quiet). None: nothing to store.
    """
    if state is not None and _seen(state, key):
        return state
    new: State = dict(state or {})
    _remember(new, key)
    deadline = new.get("deadline")
    if is_after and trigger.after:
        new.update(deadline=(now + trigger.within).isoformat(), count=0)
        return new
    if not is_expect:
        return new if state is not None else None
    if deadline is None:
        if trigger.after:
            return new if state is not None else None
        new.update(deadline=(now + trigger.within).isoformat(), count=0)
        return new
    count = int(new.get("count", 0)) + 1
    if count >= trigger.threshold:
        if trigger.after:
            new.update(deadline=None, count=0)
        else:
            new.update(deadline=(now + trigger.within).isoformat(), count=0)
    else:
        new["count"] = count
    return new


def expire_proactive(trigger: EventTrigger, state: State, now: datetime) -> tuple[State, bool]:
    """Fire a Proactive window whose deadline passed with too few events.

    After firing the bucket rests until the next ``after`` event (or, without
    ``after``, the next expected event), so a silence fires once, not every ``within``.
    """
    deadline = state.get("deadline")
    if deadline is None or now < _t(deadline):
        return state, False
    if int(state.get("count", 0)) >= trigger.threshold:
        return {**state, "deadline": None, "count": 0}, False
    # "pending" stays until the run is created (confirm_proactive), so a crash in
    # between fires again (same run id) instead of losing the firing.
    return {**state, "deadline": None, "count": 0, "fired_at": deadline, "pending": deadline}, True


def confirm_proactive(state: State, fired_at: str) -> State:
    """The state once the run of the firing at ``fired_at`` exists."""
    if state.get("pending") != fired_at:
        return state
    return {k: v for k, v in state.items() if k != "pending"}


def initial_proactive(trigger: EventTrigger, now: datetime) -> State:
    """The state a Proactive trigger with no ``after`` and no ``for_each`` starts in."""
    return {"deadline": (now + trigger.within).isoformat(), "count": 0, "seen": []}


def step_compound(
    trigger: CompoundTrigger, state: State | None, child: int, key: str, when: datetime
) -> tuple[State, bool]:
    """Record that child ``child`` fired; True when ``require`` children fired ``within``."""
    again = _redelivery(state, key)
    if again is not None:
        return again
    new: State = dict(state or {"fired": {}})
    _remember(new, key)
    fired = {int(k): _t(v) for k, v in new.get("fired", {}).items()}
    fired[child] = when
    if trigger.within > timedelta(0):
        fired = {k: v for k, v in fired.items() if when - v <= trigger.within}
    if len(fired) >= trigger.required():
        new.update(fired={}, fired_by=key)
        return new, True
    new["fired"] = {str(k): v.isoformat() for k, v in fired.items()}
    return new, False


def step_sequence(
    trigger: SequenceTrigger, state: State | None, child: int, key: str, when: datetime
) -> tuple[State, bool]:
    """Record that child ``child`` fired; True when all fired in order ``within``."""
    again = _redelivery(state, key)
    if again is not None:
        return again
    new: State = dict(state or {"progress": 0, "first": None})
    _remember(new, key)
    progress = int(new.get("progress", 0))
    first = new.get("first")
    if progress and first and trigger.within > timedelta(0) and when - _t(first) > trigger.within:
        progress, first = 0, None  # too slow: start over
    if child != progress:
        if child == 0:  # the first step again restarts the sequence
            progress, first = 0, None
        else:
            new.update(progress=progress, first=first)
            return new, False
    if progress == 0:
        first = when.isoformat()
    progress += 1
    if progress == len(trigger.triggers):
        new.update(progress=0, first=None, fired_by=key)
        return new, True
    new.update(progress=progress, first=first)
    return new, False
