"""Prefect's error constructors and the cache policies called outside a run.

Each expectation was run on Prefect 3.8.8 first.
"""

import cloudpickle
import pytest
from pydantic import BaseModel, ValidationError

from flowbus.cache_policies import NO_CACHE, Inputs, TaskSource, _None
from flowbus.exceptions import ParameterBindError, ParameterTypeError, SignatureMismatchError


class _Params(BaseModel):
    a: int
    b: str


def _fn(x: int, y: str = "k"):  # type: ignore[no-untyped-def]
    pass


def test_bind_failure_names_the_function_its_signature_and_what_it_got() -> None:
    error = ParameterBindError.from_bind_failure(_fn, TypeError("boom"), (1,), {"z": 2})
    assert str(error) == (
        "Error binding parameters for function '_fn': boom.\n"
        "Function '_fn' has signature 'x: int, y: str = 'k'' but received args: (1,) and kwargs: ['z']."
    )
    assert isinstance(error, TypeError)


def test_validation_error_lists_each_invalid_parameter() -> None:
    with pytest.raises(ValidationError) as raised:
        _Params(a="x", b=[1])  # type: ignore[arg-type]
    error = ParameterTypeError.from_validation_error(raised.value)
    assert str(error) == (
        "Flow run received invalid parameters:\n"
        " - a: Input should be a valid integer, unable to parse string as an integer\n"
        " - b: Input should be a valid string"
    )


def test_signature_mismatch_names_both_lists_and_pickles() -> None:
    error = SignatureMismatchError.from_bad_params(["dog", "cat"], ["puppy"])
    assert str(error) == "Function expects parameters ['dog', 'cat'] but was provided with parameters ['puppy']"
    assert isinstance(error, TypeError)
    copy = cloudpickle.loads(cloudpickle.dumps(error))
    assert (type(copy), copy.args) == (SignatureMismatchError, error.args)


def test_no_cache_is_an_instance_of_prefects_none_policy() -> None:
    assert isinstance(NO_CACHE, _None)
    assert _None().compute_key(None, {"x": 1}, None) is None


@pytest.mark.parametrize("inputs", [None, {}])
def test_inputs_policy_gives_no_key_without_inputs(inputs: dict[str, int] | None) -> None:
    assert Inputs().compute_key(None, inputs, None) is None


def test_inputs_policy_outside_a_run_hashes_the_inputs_alone() -> None:
    policy = Inputs(exclude=["y"])
    key = policy.compute_key(None, {"x": 1, "y": 2}, None)
    assert key is not None
    assert key == policy.compute_key(None, {"x": 1, "y": 3}, None)
    assert key != policy.compute_key(None, {"x": 2, "y": 2}, None)


def test_task_source_policy_outside_a_run_gives_no_key() -> None:
    assert TaskSource().compute_key(None, {"x": 1}, None) is None
