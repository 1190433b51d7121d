"""The chaos suite, short version (``bench/chaos.py`` runs the long one).

Every part a separate process; events stream in through the gateway while a part is
killed, frozen or restarted. Nothing accepted may be lost, and no body may run twice
at the same time; a body cut off by a crash may run again (at-least-once), but a task
it completed before a runner was killed does not (durable task reuse).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.harness import Chaos

pytestmark = [pytest.mark.chaos]

SINGLE_NODE = ["runner-kill", "runner-stop", "orchestrator-kill", "gateway-kill"]


@pytest.mark.timeout(600)
async def test_one_node_survives_every_part_killed_or_frozen(tmp_path: Path) -> None:
    chaos = Chaos(tmp_path, nodes=1)
    try:
        await chaos.start()
        results = [await chaos.run(kind, events=30, rate=10, faults=1, settle=60)
                   for kind in SINGLE_NODE]
    finally:
        chaos.stop()
    for figures in results:
        assert figures.accepted == 30, figures.line()
        assert figures.lost == [], figures.line()
        assert figures.not_completed == {}, (figures.line(), figures.not_completed)
        assert figures.concurrent == 0, figures.line()
        assert figures.tasks_completed == 30 * chaos.tasks, figures.line()
    killed = results[SINGLE_NODE.index("runner-kill")]
    assert killed.tasks_rerun == 0, killed.line()


@pytest.mark.timeout(600)
async def test_three_node_cluster_survives_a_node_and_a_runner_killed(tmp_path: Path) -> None:
    """Every event the gateway answered 202 for produced exactly one run, which ended
    Completed: with a NATS node killed and restarted, and with a runner killed."""
    chaos = Chaos(tmp_path, nodes=3)
    try:
        await chaos.start()
        results = [await chaos.run(kind, events=30, rate=10, faults=1, settle=90)
                   for kind in ("nats-node-kill", "runner-kill")]
    finally:
        chaos.stop()
    for figures in results:
        assert figures.accepted == 30, figures.line()
        assert figures.lost == [], figures.line()
        assert figures.not_completed == {}, (figures.line(), figures.not_completed)
        assert figures.concurrent == 0, figures.line()
