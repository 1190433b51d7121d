"""The flow-run state-transition rules, over every pair of states."""

from __future__ import annotations

import itertools

import pytest

from events.errors import TransitionRejected
from events.records import FlowRun, State
from events.states import FLOW_RUN_STATES, check_transition, is_final

# The expected matrix, written out independently of the rules: row = from, "x" = allowed.
# Columns in FLOW_RUN_STATES order:
#  Sch Lat AwR ACS Pen Run Rty Com Fai Cra Cng Can Pau Sus Res
MATRIX = """
None                     x   .   .   x   x   .   .   .   .   .   .   .   x   .   .
Scheduled                x   x   .   x   x   .   .   .   x   x   x   x   x   .   .
Late                     x   .   .   x   x   .   .   .   x   x   x   x   x   .   .
AwaitingRetry            x   x   .   x   x   .   .   .   x   x   x   x   .   .   .
AwaitingConcurrencySlot  x   x   .   .   x   .   .   .   x   x   x   x   .   .   .
Pending                  x   .   .   .   .   x   x   .   x   x   x   x   .   .   .
Running                  .   .   x   .   .   .   .   x   x   x   x   x   x   x   .
Retrying                 .   .   x   .   .   .   .   x   x   x   x   x   x   x   .
Completed                .   .   .   .   .   .   .   .   .   .   .   .   .   .   .
Failed                   x   .   x   .   .   .   .   .   .   .   .   .   .   .   .
Crashed                  x   .   x   .   .   .   .   .   .   .   .   .   .   .   .
Cancelling               .   .   .   .   .   .   .   x   x   x   .   x   .   .   .
Cancelled                x   .   x   .   .   .   .   .   .   .   .   .   .   .   .
Paused                   x   .   .   .   x   x   .   .   x   x   x   x   .   x   .
Suspended                .   .   .   .   .   .   .   .   x   x   x   x   .   .   x
Resuming                 x   .   .   x   x   .   .   .   x   x   x   x   .   .   .
"""


def _expected() -> dict[tuple[str | None, str], bool]:
    table = {}
    for line in MATRIX.strip().splitlines():
        name, *cells = line.split()
        source = None if name == "None" else name
        assert len(cells) == len(FLOW_RUN_STATES), name
        for target, cell in zip(FLOW_RUN_STATES, cells, strict=True):
            table[(source, target)] = cell == "x"
    return table


EXPECTED = _expected()


@pytest.mark.parametrize(("source", "target"), list(EXPECTED))
def test_every_pair(source: str | None, target: str) -> None:
    verdict = check_transition(source, target)
    assert verdict.accepted is EXPECTED[(source, target)], verdict.reason
    assert verdict.reason


def test_the_matrix_covers_every_pair() -> None:
    pairs = set(itertools.product([None, *FLOW_RUN_STATES], FLOW_RUN_STATES))
    assert pairs == set(EXPECTED)


@pytest.mark.parametrize("state", [s for s in FLOW_RUN_STATES if not is_final(s)])
def test_every_live_state_can_crash_and_be_cancelled(state: str) -> None:
    assert check_transition(state, "Crashed")
    assert check_transition(state, "Cancelled")


def test_rejections_explain_themselves() -> None:
    assert "final state" in check_transition("Completed", "Running").reason
    assert "already Running" in check_transition("Running", "Running").reason
    assert "retried" in check_transition("Failed", "Running").reason
    assert "not a flow-run state" in check_transition("Running", "Bogus").reason
    assert "start it Scheduled" in check_transition(None, "Running").reason


def test_flow_run_transition_applies_the_rules() -> None:
    run = FlowRun(id="r1", name="r", flow_name="f", state=State.named("Scheduled"))
    pending = run.transition(State.named("Pending"))
    assert pending.state.name == "Pending" and run.state.name == "Scheduled"
    with pytest.raises(TransitionRejected, match="r1: a run cannot go from Pending to Completed"):
        pending.transition(State.named("Completed"))


def test_unknown_state_name_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown state name 'Done'"):
        State.named("Done")
