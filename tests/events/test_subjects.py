"""Event types as subjects, and type patterns as NATS filters."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from events.errors import InvalidEvent
from events.subjects import check_type, event_subject, filter_subject, type_matches


def nats_subject_matches(filter_subject: str, subject: str) -> bool:
    """NATS's own matching rule, written out to check our filters against."""
    f_tokens, s_tokens = filter_subject.split("."), subject.split(".")
    for i, token in enumerate(f_tokens):
        if token == ">":
            return len(s_tokens) > i
        if i >= len(s_tokens) or (token != "*" and token != s_tokens[i]):
            return False
    return len(f_tokens) == len(s_tokens)


@pytest.mark.parametrize("good", ["a", "com.github.push", "flowbus.flow-run.Completed", "x_y:z.1"])
def test_valid_types(good: str) -> None:
    assert check_type(good) == good


@pytest.mark.parametrize("bad", ["", "a b", "a.", ".a", "a..b", "a.*", "a.>", "a\tb", "x" * 256])
def test_invalid_types_are_refused(bad: str) -> None:
    with pytest.raises(InvalidEvent):
        check_type(bad)


def test_subject_of_type() -> None:
    assert event_subject("flowbus", "com.github.push") == "flowbus.events.com.github.push"


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("com.github.push", "flowbus.events.com.github.push"),
        ("com.github.*", "flowbus.events.com.github.>"),
        ("*", "flowbus.events.>"),
        ("com.*.push", "flowbus.events.com.>"),
        ("flowbus.flow-run.Comp*", "flowbus.events.flowbus.flow-run.>"),
    ],
)
def test_filter_subject(pattern: str, expected: str) -> None:
    assert filter_subject("flowbus", pattern) == expected


@pytest.mark.parametrize(
    ("pattern", "event_type", "matches"),
    [
        ("com.github.push", "com.github.push", True),
        ("com.github.push", "com.github.pushed", False),
        ("com.github.*", "com.github.pull_request.opened", True),
        ("com.github.*", "com.gitlab.push", False),
        ("*.Completed", "flowbus.flow-run.Completed", True),
        ("flowbus.*-run.Failed", "flowbus.task-run.Failed", True),
        ("a.[b]", "a.[b]", True),
        ("a.[b]", "a.b", False),
    ],
)
def test_type_matches(pattern: str, event_type: str, matches: bool) -> None:
    assert type_matches(pattern, event_type) is matches


_token = st.text(alphabet="abcxyz-_", min_size=1, max_size=4)
_type = st.lists(_token, min_size=1, max_size=5).map(".".join)


@given(event_type=_type, data=st.data())
def test_filter_contains_every_match(event_type: str, data: st.DataObject) -> None:
    # Build a pattern that matches event_type by starring a random slice of it.
    start = data.draw(st.integers(0, len(event_type)))
    end = data.draw(st.integers(start, len(event_type)))
    pattern = event_type[:start] + "*" + event_type[end:]
    if pattern.startswith(".") or ".." in pattern.replace("*", "x") or pattern.endswith("."):
        return
    assert type_matches(pattern, event_type)
    assert nats_subject_matches(filter_subject("ns", pattern), event_subject("ns", event_type))
