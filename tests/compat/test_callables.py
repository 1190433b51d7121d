"""``flowbus.utilities.callables`` against Prefect 3.8.8's ``prefect.utilities.callables``
(each expectation was observed on Prefect first)."""

from __future__ import annotations

import pickle
from typing import Any

import cloudpickle  # type: ignore[import-untyped]
import pytest

from flowbus import flow, task
from flowbus.exceptions import ParameterBindError, SignatureMismatchError
from flowbus.utilities import callables as cb


def everything(a: int, b: int = 2, *args: int, c: int, d: int = 4, **kw: Any) -> None: ...


def positional_only(a: int, /, b: int, c: int = 3, *, d: int = 5, **kw: Any) -> None: ...


def plain(a: int, b: int = 2) -> int:
    return a + b


def test_get_call_parameters_binds_and_applies_defaults() -> None:
    assert cb.get_call_parameters(everything, (1, 2, 3), {"c": 5, "z": 9}) == {
        "a": 1, "b": 2, "args": (3,), "c": 5, "d": 4, "kw": {"z": 9}}  # fmt: skip
    assert cb.get_call_parameters(plain, (1,), {}, apply_defaults=False) == {"a": 1}
    with pytest.raises(ParameterBindError, match="missing a required argument: 'a'"):
        cb.get_call_parameters(plain, (), {"q": 1})
    assert cb.get_parameter_defaults(everything) == {"b": 2, "d": 4}


def test_variadic_keywords_explode_and_collapse() -> None:
    assert cb.explode_variadic_parameter(everything, {"a": 1, "kw": {"x": 1}}) == {"a": 1, "x": 1}
    assert cb.explode_variadic_parameter(plain, {"a": 1}) == {"a": 1}
    assert cb.collapse_variadic_parameters(everything, {"a": 1, "x": 1}) == {"a": 1, "kw": {"x": 1}}
    with pytest.raises(ValueError, match="does not include any variadic keyword argument"):
        cb.collapse_variadic_parameters(plain, {"a": 1, "x": 1})


def test_parameters_go_back_to_args_and_kwargs() -> None:
    assert cb.parameters_to_args_kwargs(plain, {"a": 1, "b": 3}) == ((1,), {"b": 3})
    assert cb.parameters_to_args_kwargs(positional_only, {"a": 1, "b": 3, "c": 4, "d": 6, "kw": {"e": 1}}) == (
        (1, 3), {"c": 4, "d": 6, "e": 1})  # fmt: skip
    assert cb.parameters_to_args_kwargs(everything, {"a": 1, "b": 2, "args": (3,), "c": 5}) == ((1, 2, 3), {"c": 5})
    with pytest.raises(SignatureMismatchError, match=r"expects parameters \['a', 'b'\] but was provided"):
        cb.parameters_to_args_kwargs(plain, {"a": 1, "zz": 3})
    with pytest.raises(TypeError, match="got multiple values for argument"):
        cb.parameters_to_args_kwargs(positional_only, {"a": 1, "b": 2, "d": 1, "kw": {"d": 2}})
    assert cb.call_with_parameters(plain, cb.get_call_parameters(plain, (1,), {"b": 5})) == 6


def test_a_wrapped_call_crosses_the_standard_pickler() -> None:
    call = pickle.loads(pickle.dumps(cb.cloudpickle_wrapped_call(lambda a, b: a + b, 1, b=2)))
    assert cloudpickle.loads(call()) == 3


def documented(x: int, y: str = "a") -> None:
    """Say things.

    Args:
        x: the x,
            on two lines
        y: the y
    """


def test_parameter_schema_of_functions_flows_and_tasks() -> None:
    expected = {
        "title": "Parameters", "type": "object",
        "properties": {
            "x": {"description": "the x,\non two lines", "position": 0, "title": "x", "type": "integer"},
            "y": {"default": "a", "description": "the y", "position": 1, "title": "y", "type": "string"},
        },
        "required": ["x"], "definitions": {},
    }  # fmt: skip
    assert cb.parameter_schema(documented).model_dump_for_openapi() == expected
    assert cb.parameter_schema(flow(documented)).model_dump_for_openapi() == expected
    assert cb.parameter_schema(task(documented)).model_dump_for_openapi() == expected
    assert "required" not in cb.parameter_schema(lambda: None).model_dump_for_openapi()
    assert cb.parameter_docstrings(None) == {}
    assert cb.parameter_docstrings("Doc.\n\nArgs:\n    x (int): typed\n    **kw: extra\n") == {
        "x": "typed", "**kw": "extra"}  # fmt: skip


def test_tags_context_reads_the_open_tags_blocks() -> None:
    from flowbus.context import TagsContext, tags

    assert TagsContext.get().current_tags == set()
    with tags("a", "b"), tags("c"):
        assert TagsContext.get().current_tags == {"a", "b", "c"}

    @task
    def seen() -> set[str]:
        return TagsContext.get().current_tags

    @flow
    def outer() -> set[str]:
        with tags("in-flow"):
            return seen.submit().result()

    with tags("outside"):
        assert outer() == {"outside", "in-flow"}
