"""`flowbus.utilities.collections`, `.annotations`, `.importtools` and `.dispatch` as
Prefect 3.8.8's `prefect.utilities.*` behave (each expectation was run on Prefect first)."""

from __future__ import annotations

import collections
import dataclasses
import json
import warnings
from typing import Any
from unittest import mock

import pydantic
import pytest

from flowbus import flow, task
from flowbus.serializers import Serializer
from flowbus.utilities.annotations import BaseAnnotation, Quote, freeze, opaque, quote, unmapped
from flowbus.utilities.collections import (
    AutoEnum,
    StopVisiting,
    batched_iterable,
    deep_merge,
    deep_merge_dicts,
    dict_to_flatdict,
    distinct,
    ensure_iterable,
    extract_instances,
    flatdict_to_dict,
    get_from_dict,
    isiterable,
    listrepr,
    remove_nested_keys,
    set_in_dict,
    visit_collection,
)
from flowbus.utilities.dispatch import get_registry_for_type
from flowbus.utilities.importtools import from_qualified_name, to_qualified_name


def negate_even(x: Any) -> Any:
    return -x if isinstance(x, int) and x % 2 == 0 else x


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Model(pydantic.BaseModel):
    x: int
    y: int = 0


class Private(pydantic.BaseModel):
    x: int
    _secret: int = pydantic.PrivateAttr(default=0)


class Color(AutoEnum):
    RED = AutoEnum.auto()
    BLUE = AutoEnum.auto()


def test_auto_enum_values_are_the_member_names() -> None:
    assert Color.RED.value == "RED"
    assert repr(Color.RED) == str(Color.RED) == "Color.RED"
    assert json.dumps(Color.BLUE) == '"BLUE"'


def test_visit_collection_transforms_every_kind_of_container() -> None:
    value = [1, 2, (3, 4), {2: 4}, {6}, Point(1, 2), Model(x=2)]
    result = visit_collection(value, negate_even, return_data=True)
    assert result == [1, -2, (3, -4), {-2: -4}, {-6}, Point(1, -2), Model(x=-2)]
    assert value[1] == 2, "the input is not changed"


def test_visit_collection_without_return_data_gives_none_and_sees_every_node() -> None:
    seen: list[Any] = []
    assert visit_collection({"a": [1]}, seen.append) is None
    assert seen == [{"a": [1]}, "a", [1], 1]


def test_visit_collection_copies_only_what_changed() -> None:
    value = [[1, 2], [3, 5]]
    result = visit_collection(value, negate_even, return_data=True)
    assert result == [[1, -2], [3, 5]]
    assert result[1] is value[1]
    assert visit_collection(value[1], negate_even, return_data=True) is value[1]


def test_visit_collection_keeps_named_tuples_unset_fields_and_private_attributes() -> None:
    pair = collections.namedtuple("pair", "a b")
    assert visit_collection(pair(2, 3), negate_even, return_data=True) == pair(-2, 3)
    model = Model(x=2)
    copy = visit_collection(model, negate_even, return_data=True)
    assert copy.model_dump(exclude_unset=True) == {"x": -2}
    secret = Private(x=2)
    secret._secret = 7
    assert visit_collection(secret, negate_even, return_data=True)._secret == 7


def test_visit_collection_max_depth_and_stop_visiting() -> None:
    assert visit_collection([2, [2, [2]]], negate_even, return_data=True, max_depth=2) == [-2, [-2, [2]]]
    assert visit_collection(2, negate_even, return_data=True, max_depth=0) == -2

    def stop_at_lists(x: Any) -> Any:
        if isinstance(x, list):
            raise StopVisiting
        return negate_even(x)

    assert visit_collection({"a": [2], "b": 2}, stop_at_lists, return_data=True) == {"a": [2], "b": -2}


def test_visit_collection_annotations_and_context() -> None:
    assert visit_collection([2, quote([2])], negate_even, return_data=True) == [-2, quote([-2])]
    assert visit_collection([2, quote([2])], negate_even, return_data=True, remove_annotations=True) == [-2, [-2]]
    lists: list[Any] = []

    def visit(x: Any, context: dict[str, Any]) -> Any:
        if isinstance(x, list):
            lists.append(x)
            return ["X"]
        return x

    assert visit_collection(opaque([1, [2]]), visit, context={}, return_data=True) == opaque(["X"])
    assert lists == [[1, [2]]], "opaque: the value is visited, not entered"
    annotations: list[Any] = []
    visit_collection(quote([1]), lambda x, ctx: annotations.append(ctx.get("annotation")) or x, context={})
    assert annotations[1:] == [quote([1]), quote([1])]


def test_visit_collection_handles_shared_and_circular_references() -> None:
    shared = [0, 2]
    result = visit_collection({"a": shared, "b": shared}, negate_even, return_data=True)
    assert result == {"a": [0, -2], "b": [0, -2]} and result["a"] is result["b"]
    loop: dict[str, Any] = {"n": 2}
    loop["self"] = loop
    assert visit_collection(loop, negate_even, return_data=True)["n"] == -2


def test_visit_collection_leaves_generators_and_mocks_alone() -> None:
    gen = (i for i in [2])
    assert visit_collection([gen], negate_even, return_data=True)[0] is gen
    assert next(gen) == 2
    fake = mock.MagicMock()
    assert visit_collection(fake, lambda x: x, return_data=True) is fake


def test_flat_dicts_round_trip() -> None:
    nested = {"a": {"b": 1, "c": {}}, "d": 2}
    flat = dict_to_flatdict(nested)
    assert flat == {("a", "b"): 1, ("a", "c"): {}, ("d",): 2}
    assert flatdict_to_dict(flat) == nested


def test_dict_path_helpers() -> None:
    data = {"a": {"b": [0, {"c": 5}]}}
    assert get_from_dict(data, "a.b[1].c") == 5
    assert get_from_dict(data, ["a", "b", "0"]) == 0
    assert get_from_dict(data, "a.x", "default") == "default"
    target: dict[str, Any] = {"a": {"b": 1}}
    set_in_dict(target, "a.c.d", 2)
    assert target == {"a": {"b": 1, "c": {"d": 2}}}
    with pytest.raises(TypeError, match="non-dict value"):
        set_in_dict({"a": 1}, "a.b", 2)


def test_merging_and_removing_keys() -> None:
    assert deep_merge({"a": {"b": 1, "c": 2}, "x": 1}, {"a": {"b": 3}, "x": {"y": 1}}) == {
        "a": {"b": 3, "c": 2},
        "x": {"y": 1},
    }
    assert deep_merge_dicts({"a": 1}, {"b": {"c": 1}}, {"b": {"d": 2}}) == {"a": 1, "b": {"c": 1, "d": 2}}
    assert remove_nested_keys(["x"], {"x": 1, "y": {"x": 2, "z": 3}}) == {"y": {"z": 3}}
    assert remove_nested_keys(["x"], "text") == "text"


def test_iteration_helpers() -> None:
    assert isiterable([1]) and not isiterable("ab") and not isiterable(b"x") and not isiterable(1)
    assert list(batched_iterable(range(5), 2)) == [(0, 1), (2, 3), (4,)]
    assert list(distinct([1, 2, 1, 3])) == [1, 2, 3]
    assert list(distinct(["a", "A", "b"], key=str.lower)) == ["a", "b"]
    assert extract_instances([1, "a", 2.0, 3], int) == [1, 3]
    assert extract_instances([1, "a"], (int, str)) == {int: [1], str: ["a"]}
    assert ensure_iterable(1) == [1] and ensure_iterable((1,)) == (1,)
    assert listrepr(["a", 1]) == "'a' 1"


def test_unmapped_is_an_annotation_that_repeats_its_value() -> None:
    value = unmapped([1, 2])
    assert isinstance(value, BaseAnnotation)
    assert value[0] == value[99] == [1, 2] and value.value == [1, 2]


def test_unmapped_in_map_and_in_a_plain_call() -> None:
    @task
    def add(x: int, ys: list[int]) -> int:
        return x + sum(ys)

    @flow
    def pipeline() -> tuple[list[int], int]:
        return add.map([1, 2], unmapped([10, 20])).result(), add(1, unmapped([5]))

    assert pipeline() == ([31, 32], 6)


def test_freeze_checks_json_and_serialises_as_its_value() -> None:
    frozen = freeze({"a": [1, 2]})
    assert frozen.unfreeze() == {"a": [1, 2]}
    assert pydantic.TypeAdapter(freeze).dump_python(frozen) == {"a": [1, 2]}
    assert pydantic.TypeAdapter(freeze[int]).dump_python(freeze(3)) == 3
    with pytest.raises(ValueError, match="Value must be JSON serializable"):
        freeze(object())


def test_a_frozen_deployment_parameter_is_deployed_as_its_value() -> None:
    @flow
    def greet(name: str) -> str:
        return name

    deployment = greet.to_deployment("frozen", parameters={"name": freeze("Ada")})
    assert deployment.parameters == {"name": "Ada"}
    assert deployment.to_record("default").parameters == {"name": "Ada"}


def test_quote_old_name_warns() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        old = Quote(1)
    assert old.unquote() == 1 and isinstance(old, quote)
    assert "Use `quote` instead" in str(caught[0].message)


def test_qualified_names() -> None:
    assert to_qualified_name(collections.OrderedDict) == "collections.OrderedDict"
    assert from_qualified_name("collections.OrderedDict") is collections.OrderedDict
    assert from_qualified_name("os.path") is __import__("os").path
    with pytest.raises(ModuleNotFoundError):
        from_qualified_name("no_such_module_here")
    with pytest.raises(AttributeError):
        from_qualified_name("collections.NoSuchName")


def test_the_serializer_registry_is_the_one_names_resolve_in() -> None:
    registry = get_registry_for_type(Serializer)
    assert registry is not None and registry["json"].name == "json"
    assert get_registry_for_type(int) is None
