"""The options of ``@flow`` / ``@task`` refused as Prefect 3.8.8 refuses them, and the
message of a run past its timeout (each expectation was run on Prefect first, messages
included; Prefect names that state ``TimedOut``, flowbus keeps ``Failed``)."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import pytest

from flowbus import flow, task
from flowbus.exceptions import InvalidNameError, ReservedArgumentError
from flowbus.flows import Flow
from flowbus.tasks import Task

FLOW_HOOKS = ("on_completion", "on_failure", "on_cancellation", "on_crashed", "on_running")
TASK_HOOKS = ("on_completion", "on_failure", "on_running")


def _hook(*args: Any) -> None:
    return None


@pytest.mark.parametrize("option", FLOW_HOOKS)
def test_a_flow_hook_option_takes_a_list_of_callables(option: str) -> None:
    example = f"@flow({option}=[hook1, hook2])\ndef my_flow():\n\tpass"
    with pytest.raises(TypeError, match=re.escape(
            f"Expected iterable for '{option}'; got function instead. Please provide a list of hooks "
            f"to '{option}':\n\n{example}")):  # fmt: skip
        flow(**{option: _hook})(lambda: 1)
    for bad in (["test"], [_hook, "test"]):
        with pytest.raises(TypeError, match=re.escape(f"Expected callables in '{option}'; got str instead.")):
            flow(**{option: bad})(lambda: 1)
    made = flow(**{option: [_hook]})(lambda: 1)
    assert list(getattr(made, option)) == [_hook]


@pytest.mark.parametrize("option", TASK_HOOKS)
def test_a_task_hook_option_takes_a_list_of_callables(option: str) -> None:
    with pytest.raises(TypeError, match=re.escape(f"@task({option}=[hook1, hook2])\ndef my_task():\n\tpass")):
        task(**{option: _hook})(lambda: 1)
    with pytest.raises(TypeError, match=re.escape(f"Expected callables in '{option}'; got int instead.")):
        task(**{option: [1]})(lambda: 1)


def test_with_options_checks_hooks_too() -> None:
    @flow
    def plain() -> int:
        return 1

    with pytest.raises(TypeError, match="Expected iterable for 'on_failure'"):
        plain.with_options(on_failure=_hook)


class _NotAName:
    def format(self, *args: Any, **kwargs: Any) -> None:
        return None


def test_run_names_must_be_strings_or_callables() -> None:
    with pytest.raises(TypeError, match=re.escape("Expected string or callable for 'flow_run_name'; got _NotAName instead.")):
        flow(flow_run_name=_NotAName())(lambda: 1)
    with pytest.raises(TypeError, match=re.escape("Expected string or callable for 'task_run_name'; got _NotAName instead.")):
        task(task_run_name=_NotAName())(lambda: 1)
    assert flow(flow_run_name="run-{x}")(lambda x: x).flow_run_name == "run-{x}"


def test_a_flow_name_must_be_a_string() -> None:
    with pytest.raises(TypeError, match=re.escape("Expected string for flow parameter 'name'; got int instead.")):
        flow(name=1)(lambda: 1)  # type: ignore[arg-type]

    def get_name() -> str:
        return "x"

    with pytest.raises(TypeError, match=re.escape("Perhaps you meant to call it? e.g. '@flow(name=get_flow_run_name())'")):
        flow(name=get_name)(lambda: 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Expected string for flow parameter 'name'"):
        flow(lambda: 1).with_options(name=1)


@pytest.mark.parametrize("name", ["my/flow", "my%flow", "my<flow", "my>flow", "my&flow"])
def test_a_flow_name_may_not_hold_banned_characters(name: str) -> None:
    with pytest.raises(InvalidNameError, match="contains an invalid character"):
        Flow(fn=lambda: 1, name=name)
    assert Task(fn=lambda: 1, name=name).name == name  # task names are not checked, as in Prefect


def test_a_lambdas_flow_is_named_unknown_lambda() -> None:
    assert Flow(fn=lambda: 1).name == "unknown-lambda"
    assert Task(fn=lambda: 1).name == "<lambda>"


@pytest.mark.parametrize("reserved", ["return_state", "wait_for"])
def test_reserved_parameter_names_are_refused(reserved: str) -> None:
    namespace: dict[str, Any] = {}
    exec(f"def body({reserved}=None):\n    return 1", namespace)
    with pytest.raises(ReservedArgumentError, match=re.escape(f"'{reserved}' is a reserved argument name and cannot be used.")):
        flow(namespace["body"])
    with pytest.raises(ReservedArgumentError, match=f"'{reserved}' is a reserved argument name"):
        task(namespace["body"])


def test_a_sync_flow_past_its_timeout_fails_with_prefects_message() -> None:
    @flow(timeout_seconds=0.2)
    def slow() -> None:
        time.sleep(3)

    state = slow(return_state=True)
    assert state.is_failed() and state.name == "Failed"  # Prefect: "TimedOut" (docs/compat.md)
    assert state.message == "Flow run exceeded timeout of 0.2 second(s)"
    with pytest.raises(TimeoutError):
        state.result()


async def test_an_async_flow_past_its_timeout_fails_with_prefects_message() -> None:
    @flow(timeout_seconds=0.2)
    async def slow() -> None:
        await asyncio.sleep(3)

    state = await slow(return_state=True)
    assert state.is_failed() and state.name == "Failed"  # Prefect: "TimedOut" (docs/compat.md)
    assert state.message == "Flow run exceeded timeout of 0.2 second(s)"


def test_a_sync_task_past_its_timeout_fails_with_prefects_message() -> None:
    @task(timeout_seconds=0.2)
    def slow() -> None:
        time.sleep(3)

    seen: list[Any] = []

    @flow
    def parent() -> None:
        seen.append(slow(return_state=True))

    parent()
    [state] = seen
    assert state.is_failed() and state.name == "Failed"  # Prefect: "TimedOut" (docs/compat.md)
    assert state.message == "Task run exceeded timeout of 0.2 second(s)"


async def test_an_async_task_past_its_timeout_fails_with_prefects_message() -> None:
    @task(timeout_seconds=0.2)
    async def slow() -> None:
        await asyncio.sleep(3)

    @flow
    async def parent() -> list[Any]:
        return [await slow(return_state=True)]

    [state] = await parent()
    assert state.is_failed() and state.name == "Failed"  # Prefect: "TimedOut" (docs/compat.md)
    assert state.message == "Task run exceeded timeout of 0.2 second(s)"


def test_a_zero_timeout_means_none() -> None:
    @flow(timeout_seconds=1)
    def limited() -> int:
        return 1

    @task(timeout_seconds=1)
    def limited_task() -> int:
        return 1

    assert limited.with_options(timeout_seconds=0).timeout_seconds is None
    assert limited_task.with_options(timeout_seconds=0).timeout_seconds is None
    assert flow(timeout_seconds=0)(lambda: 1).timeout_seconds is None
    assert task(timeout_seconds=0)(lambda: 1).timeout_seconds is None
    with pytest.raises(ValueError, match="timeout_seconds must be >= 0"):
        flow(timeout_seconds=-1)(lambda: 1)


def _self_waiting_flow(is_async: bool) -> Any:
    import threading

    from flowbus.task_runners import ThreadPoolTaskRunner

    gate = threading.Event()

    @task
    def hold() -> None:
        assert gate.wait(60)

    @task
    def greet(name: str) -> str:
        return f"Hello {name}!"

    def body() -> list[Any]:
        blocker = hold.submit()  # the one worker is busy until the list holds the future
        upstream: list[Any] = []
        future = greet.submit("ada", wait_for=upstream)
        upstream.append(future)  # the run now waits for itself
        gate.set()
        blocker.result()
        return [future.result()]

    async def abody() -> list[Any]:
        return body()

    options = {"task_runner": ThreadPoolTaskRunner(max_workers=1)}
    return flow(**options)(abody) if is_async else flow(**options)(body)


def test_a_task_waiting_for_itself_fails_instead_of_hanging() -> None:
    with pytest.raises(ValueError, match=re.escape("Discovered a task depending on itself. Raising to avoid a deadlock.")):
        _self_waiting_flow(is_async=False)()


async def test_a_task_waiting_for_itself_fails_instead_of_hanging_in_an_async_flow() -> None:
    with pytest.raises(ValueError, match="depending on itself"):
        await _self_waiting_flow(is_async=True)()


def test_a_run_name_set_later_is_checked_when_the_flow_runs() -> None:
    @flow
    def plain() -> None:
        return None

    plain.flow_run_name = _NotAName()  # type: ignore[assignment]
    with pytest.raises(TypeError, match=re.escape("Expected string or callable for 'flow_run_name'; got _NotAName")):
        plain()


async def test_a_run_name_set_later_is_checked_when_the_async_flow_runs() -> None:
    @flow
    async def plain() -> None:
        return None

    plain.flow_run_name = _NotAName()  # type: ignore[assignment]
    with pytest.raises(TypeError, match="Expected string or callable for 'flow_run_name'"):
        await plain()
