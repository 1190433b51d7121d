"""Trigger state semantics: thresholds, windows at their edges, order, after, compound, sequence."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from events.triggers import CompoundTrigger, EventTrigger, SequenceTrigger
from orchestrator import windows

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def run_reactive(trigger: EventTrigger, steps: list[tuple[str, float, str]]) -> list[bool]:
    """Feed (kind, time, key) steps, kind 'e' expect, 'a' after, 'b' both; the firings."""
    state: dict[str, Any] | None = None
    fired = []
    for kind, seconds, key in steps:
        state, hit = windows.step_reactive(
            trigger, state, key, at(seconds), is_expect=kind in "eb", is_after=kind in "ab"
        )
        fired.append(hit)
    return fired


REACTIVE = [
    ("threshold 1 fires each time", {}, [("e", 0, "1"), ("e", 1, "2")], [True, True]),
    ("threshold 3 fires on the third", {"threshold": 3}, [("e", 0, "1"), ("e", 1, "2"), ("e", 2, "3")],
     [False, False, True]),
    ("count restarts after firing", {"threshold": 2}, [("e", 0, "1"), ("e", 1, "2"), ("e", 2, "3")],
     [False, True, False]),
    ("window edge is inclusive", {"threshold": 2, "within": 10}, [("e", 0, "1"), ("e", 10, "2")],
     [False, True]),
    ("just past the window", {"threshold": 2, "within": 10}, [("e", 0, "1"), ("e", 10.001, "2")],
     [False, False]),
    ("window slides", {"threshold": 2, "within": 10}, [("e", 0, "1"), ("e", 11, "2"), ("e", 20, "3")],
     [False, False, True]),
    ("within 0 is unbounded", {"threshold": 2}, [("e", 0, "1"), ("e", 10_000, "2")], [False, True]),
    ("out-of-order event inside the window counts", {"threshold": 2, "within": 10},
     [("e", 10, "1"), ("e", 5, "2")], [False, True]),
    ("out-of-order event before the window is dropped", {"threshold": 2, "within": 10},
     [("e", 30, "1"), ("e", 5, "2"), ("e", 31, "3")], [False, False, True]),
    ("redelivered event counts once", {"threshold": 2}, [("e", 0, "1"), ("e", 0, "1")], [False, False]),
    ("redelivery of the firing event fires again", {"threshold": 2},
     [("e", 0, "1"), ("e", 1, "2"), ("e", 1, "2")], [False, True, True]),
    ("expect before after is ignored", {"after": ["x"], "expect": ["y"]}, [("e", 0, "1"), ("a", 1, "2"),
     ("e", 2, "3")], [False, False, True]),
    ("after must come again after firing", {"after": ["x"], "expect": ["y"]},
     [("a", 0, "1"), ("e", 1, "2"), ("e", 2, "3")], [False, True, False]),
    ("event both after and expected", {"after": ["x"], "expect": ["x"]}, [("b", 0, "1")], [True]),
]


@pytest.mark.parametrize(("fields", "steps", "expected"), [c[1:] for c in REACTIVE],
                         ids=[c[0] for c in REACTIVE])
def test_reactive_trigger(fields: dict[str, Any], steps: list[tuple[str, float, str]],
                          expected: list[bool]) -> None:
    assert run_reactive(EventTrigger(**fields), steps) == expected


def proactive(**fields: Any) -> EventTrigger:
    return EventTrigger(posture="Proactive", expect={"heartbeat"}, within=timedelta(seconds=60), **fields)


def test_proactive_fires_when_expected_events_do_not_arrive() -> None:
    trigger = proactive()
    state = windows.initial_proactive(trigger, at(0))
    state, fired = windows.expire_proactive(trigger, state, at(59))
    assert not fired
    state, fired = windows.expire_proactive(trigger, state, at(60))
    assert fired
    _, again = windows.expire_proactive(trigger, state, at(500))
    assert not again  # one silence fires once


def test_proactive_heartbeat_keeps_it_quiet() -> None:
    trigger = proactive()
    state: dict[str, Any] | None = windows.initial_proactive(trigger, at(0))
    state = windows.step_proactive(trigger, state, "1", at(50), is_expect=True, is_after=False)
    assert state is not None
    state, fired = windows.expire_proactive(trigger, state, at(100))
    assert not fired
    state, fired = windows.expire_proactive(trigger, state, at(110))
    assert fired


def test_proactive_threshold_counts_within_the_window() -> None:
    trigger = proactive(threshold=2)
    state: dict[str, Any] | None = windows.initial_proactive(trigger, at(0))
    state = windows.step_proactive(trigger, state, "1", at(10), is_expect=True, is_after=False)
    assert state is not None
    _, fired = windows.expire_proactive(trigger, state, at(60))
    assert fired  # one of two expected events arrived


def test_proactive_with_after_opens_a_window_per_after_event() -> None:
    trigger = proactive(after={"order.created"})
    state = windows.step_proactive(trigger, None, "e", at(0), is_expect=True, is_after=False)
    assert state is None  # expected events before any after: nothing to watch
    state = windows.step_proactive(trigger, None, "a", at(0), is_expect=False, is_after=True)
    assert state is not None and state["deadline"] == at(60).isoformat()
    quiet = windows.step_proactive(trigger, state, "b", at(30), is_expect=True, is_after=False)
    assert quiet is not None and quiet["deadline"] is None
    _, fired = windows.expire_proactive(trigger, state, at(61))
    assert fired


def _compound(require: Any, within: float = 0) -> CompoundTrigger:
    return CompoundTrigger(triggers=[EventTrigger(expect={"a"}), EventTrigger(expect={"b"}),
                                     EventTrigger(expect={"c"})],
                           require=require, within=timedelta(seconds=within))


@pytest.mark.parametrize(("require", "children", "expected"), [
    ("any", [0], [True]),
    ("all", [0, 1, 2], [False, False, True]),
    ("all", [0, 0, 1], [False, False, False]),
    (2, [2, 0], [False, True]),
])
def test_compound_trigger_require(require: Any, children: list[int], expected: list[bool]) -> None:
    trigger = _compound(require)
    state = None
    fired = []
    for n, child in enumerate(children):
        state, hit = windows.step_compound(trigger, state, child, str(n), at(n))
        fired.append(hit)
    assert fired == expected


def test_compound_window_forgets_old_children() -> None:
    trigger = _compound(2, within=10)
    state, _ = windows.step_compound(trigger, None, 0, "1", at(0))
    state, fired = windows.step_compound(trigger, state, 1, "2", at(11))
    assert not fired
    _, fired = windows.step_compound(trigger, state, 2, "3", at(15))
    assert fired


@pytest.mark.parametrize(("children", "times", "expected"), [
    ([0, 1, 2], [0, 1, 2], [False, False, True]),
    ([1, 0, 1, 2], [0, 1, 2, 3], [False, False, False, True]),
    ([0, 2, 1, 2], [0, 1, 2, 3], [False, False, False, True]),
    ([0, 1, 2], [0, 1, 30], [False, False, False]),
    ([0, 0, 1, 2], [0, 25, 26, 27], [False, False, False, True]),
])
def test_sequence_trigger_order_and_window(children: list[int], times: list[float],
                                           expected: list[bool]) -> None:
    trigger = SequenceTrigger(triggers=[EventTrigger(expect={"a"}), EventTrigger(expect={"b"}),
                                        EventTrigger(expect={"c"})], within=timedelta(seconds=20))
    state = None
    fired = []
    for n, (child, seconds) in enumerate(zip(children, times, strict=True)):
        state, hit = windows.step_sequence(trigger, state, child, str(n), at(seconds))
        fired.append(hit)
    assert fired == expected


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=1, max_value=6), st.lists(st.integers(min_value=0, max_value=40), max_size=60))
def test_redeliveries_never_change_how_often_a_trigger_fires(threshold: int, keys: list[int]) -> None:
    """Events identified by ``keys`` (repeats are redeliveries): one firing per ``threshold`` new ones."""
    trigger = EventTrigger(threshold=threshold)
    state: dict[str, Any] | None = None
    fired_by: set[int] = set()
    new_events = 0
    for n, key in enumerate(keys):
        redelivered = key in keys[:n]
        state, hit = windows.step_reactive(trigger, state, str(key), at(n), is_expect=True, is_after=False)
        if not redelivered:
            new_events += 1
            assert hit == (new_events % threshold == 0)
        if hit:
            fired_by.add(key)
    assert len(fired_by) == new_events // threshold
