"""The index matches exactly what brute force over every trigger matches."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from events.cloudevent import CloudEvent
from events.records import Deployment
from orchestrator.index import EventView, TriggerIndex, compile_triggers, match_brute_force

NOW = datetime(2026, 1, 1, tzinfo=UTC)
tokens = st.sampled_from(["a", "b", "ab", "com", "x1"])
types = st.lists(tokens, min_size=1, max_size=4).map(".".join)


@st.composite
def patterns(draw: st.DrawFn) -> str:
    parts = draw(st.lists(st.sampled_from(["a", "b", "ab", "com", "x1", "*", "a*", "*b"]),
                          min_size=1, max_size=4))
    return ".".join(parts)


trigger_defs = st.fixed_dictionaries(
    {"expect": st.lists(patterns(), max_size=3)},
    optional={
        "after": st.lists(patterns(), max_size=2),
        "match": st.dictionaries(st.just("source"), st.sampled_from(["s1", "s*", "!s1", "*"]), max_size=1),
    },
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(trigger_defs, min_size=1, max_size=3), min_size=1, max_size=6),
       st.lists(st.tuples(types, st.sampled_from(["s1", "s2"])), min_size=1, max_size=8),
       st.integers(min_value=0, max_value=5))
def test_index_matches_what_brute_force_matches(
    deployments: list[list[dict[str, object]]], events: list[tuple[str, str]], removed: int
) -> None:
    index = TriggerIndex()
    for n, triggers in enumerate(deployments):
        deployment = Deployment(name=f"d{n}", flow_name="f", triggers=triggers)
        index.replace_deployment(deployment.name, compile_triggers(deployment))
    index.replace_deployment(f"d{removed}", [])  # removal keeps the index consistent
    for event_type, source in events:
        view = EventView(CloudEvent.create(event_type, source=source), NOW)
        by_index = {leaf.key for leaf in index.match(view)}
        by_force = {leaf.key for leaf in match_brute_force(index.triggers(), view)}
        assert by_index == by_force
