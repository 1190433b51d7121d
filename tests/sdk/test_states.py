from __future__ import annotations

import pytest

from flowbus.exceptions import CancelledRun, CrashedRun, FailedRun, UnfinishedRun
from flowbus.states import (
    AwaitingConcurrencySlot,
    AwaitingRetry,
    Cached,
    Cancelled,
    Cancelling,
    Completed,
    Crashed,
    Failed,
    Late,
    Paused,
    Pending,
    Retrying,
    Running,
    Scheduled,
    StateType,
    Suspended,
)


def test_constructors_give_prefects_names_and_types() -> None:
    expected = {
        Scheduled: ("Scheduled", StateType.SCHEDULED),
        Late: ("Late", StateType.SCHEDULED),
        AwaitingRetry: ("AwaitingRetry", StateType.SCHEDULED),
        AwaitingConcurrencySlot: ("AwaitingConcurrencySlot", StateType.SCHEDULED),
        Pending: ("Pending", StateType.PENDING),
        Running: ("Running", StateType.RUNNING),
        Retrying: ("Retrying", StateType.RUNNING),
        Completed: ("Completed", StateType.COMPLETED),
        Cached: ("Cached", StateType.COMPLETED),
        Failed: ("Failed", StateType.FAILED),
        Crashed: ("Crashed", StateType.CRASHED),
        Cancelled: ("Cancelled", StateType.CANCELLED),
        Cancelling: ("Cancelling", StateType.CANCELLING),
        Paused: ("Paused", StateType.PAUSED),
        Suspended: ("Suspended", StateType.PAUSED),
    }
    for constructor, (name, type_) in expected.items():
        state = constructor()
        assert (state.name, state.type) == (name, type_)


def test_predicates() -> None:
    assert Cached().is_completed() and Cached().is_final()
    assert Retrying().is_running() and not Retrying().is_final()
    assert AwaitingRetry().is_scheduled()
    assert Failed().is_failed() and Crashed().is_crashed() and Cancelled().is_cancelled()
    assert Suspended().is_paused() and Pending().is_pending()
    assert {s().is_final() for s in (Completed, Failed, Crashed, Cancelled)} == {True}


def test_result_of_final_states() -> None:
    assert Completed(data=5).result() == 5
    err = ValueError("x")
    with pytest.raises(ValueError):
        Failed(data=err).result()
    assert Failed(data=err).result(raise_on_failure=False) is err
    with pytest.raises(FailedRun, match="why"):
        Failed(message="why").result()
    with pytest.raises(CrashedRun):
        Crashed().result()
    with pytest.raises(CancelledRun):
        Cancelled().result()
    with pytest.raises(UnfinishedRun):
        Running().result()


def test_repr_matches_prefects_log_lines() -> None:
    assert repr(Completed()) == "Completed()"
    assert repr(Cached()) == "Cached(type=COMPLETED)"
    assert repr(Failed(message="boom")) == "Failed('boom')"


def test_state_dict_is_json_safe() -> None:
    d = Failed(message="m").to_dict()
    assert d["type"] == "FAILED" and d["name"] == "Failed" and d["message"] == "m"
    assert d["timestamp"].endswith("+00:00")
