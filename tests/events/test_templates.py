"""Sandboxed templates: types kept, limits enforced, failures named."""

from __future__ import annotations

import pytest

from events.templates import MAX_RANGE, TemplateError, check_template, render, render_value

CTX = {"event": {"data": {"count": 3, "items": [1, 2], "flag": False, "name": "x"}}}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ event.data.count }}", 3),
        ("  {{ event.data.items }} ", [1, 2]),
        ("{{ event.data.flag }}", False),
        ("{{ event.data.count + 1 }}", 4),
        ("n={{ event.data.count }}", "n=3"),
        ("{{ event.data.name }}-{{ event.data.count }}", "x-3"),
        ("plain", "plain"),
        ("{% for i in event.data.items %}{{ i }}{% endfor %}", "12"),
    ],
)
def test_render_keeps_types_for_one_expression(source: str, expected: object) -> None:
    assert render(source, CTX) == expected


def test_render_value_walks_structures() -> None:
    assert render_value({"a": ["{{ event.data.count }}", 5], "b": "{{ event.data.name }}"}, CTX) == {
        "a": [3, 5], "b": "x"}


def test_undefined_names_the_template() -> None:
    with pytest.raises(TemplateError, match="missing"):
        render("{{ event.data.missing }}", CTX)


def test_sandbox_refuses_attribute_escapes() -> None:
    with pytest.raises(TemplateError, match=r"not allowed|failed"):
        render("{{ ''.__class__.__mro__[1].__subclasses__() }}", CTX)


def test_huge_range_is_refused() -> None:
    with pytest.raises(TemplateError, match=str(MAX_RANGE)):
        render("{% for i in range(10000000) %}x{% endfor %}", CTX)


def test_output_size_is_limited() -> None:
    with pytest.raises(TemplateError, match="over"):
        render("{% for i in range(9000) %}" + "y" * 40 + "{% endfor %}", CTX)


def test_syntax_error_is_found_at_definition() -> None:
    with pytest.raises(TemplateError, match="syntax error"):
        check_template("{{ event.data.count ")


def test_immutable_sandbox_refuses_mutation() -> None:
    with pytest.raises(TemplateError):
        render("{{ event.data.items.append(3) }}", CTX)
