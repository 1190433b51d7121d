"""What a chaos run measured, read from the journal the flow writes and the state history.

The chaos flow journals ``tick <event-id> <pid> <time>`` lines while its body runs,
``end <event-id> <pid> <time>`` when it finishes, and each of its tasks, when it
completes, ``task <event-id>/<n> <pid> <time>``. One (event id, pid) is one body
execution; a task line written twice for one (event id, n) is a task that completed
and then ran again.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Figures:
    """What one chaos run measured, per fault kind and overall."""

    kind: str
    accepted: int = 0
    executed: int = 0
    executed_twice: int = 0
    concurrent: int = 0
    lost: list[str] = field(default_factory=list)
    recovery: list[float] = field(default_factory=list)
    # Accepted events without exactly one run, or whose run did not end Completed:
    # event id -> the states of its runs (read from the flow-run records).
    not_completed: dict[str, list[str]] = field(default_factory=dict)
    tasks_completed: int = 0  # distinct task runs that completed
    # Task runs that completed (journaled their end) and then ran again in a later
    # attempt: durable task reuse keeps this at 0.
    tasks_rerun: int = 0

    def line(self) -> str:
        rec = sorted(self.recovery)
        p50 = f"{rec[len(rec) // 2]:.1f}" if rec else "-"
        worst = f"{rec[-1]:.1f}" if rec else "-"
        return (f"{self.kind:<18} accepted {self.accepted:>5}  executed {self.executed:>5}  "
                f"twice {self.executed_twice:>3}  twice-at-once {self.concurrent:>2}  "
                f"lost {len(self.lost):>2}  not-one-Completed-run {len(self.not_completed):>2}  "
                f"recovery p50/max {p50}/{worst} s  tasks {self.tasks_completed:>5}  "
                f"tasks-completed-then-run-again {self.tasks_rerun:>2}")


FINAL = frozenset({"Completed", "Failed", "Cancelled"})  # concluded, not crashed
History = list[tuple[float, str, str, str | None, int]]  # time, run, state, runner, attempt


def recoveries(history: History, faults: list[tuple[float, str, str]]) -> list[float]:
    """Seconds from a runner's SIGKILL/SIGSTOP to the next attempt (or the conclusion)
    of each run it held."""
    out = []
    for at, what, victim in faults:
        if not what.startswith("runner"):
            continue
        latest: dict[str, tuple[str, str | None, int]] = {}
        for when, run_id, state, runner, attempt in history:
            if when <= at:
                latest[run_id] = (state, runner, attempt)
        for run_id, (state, runner, attempt) in latest.items():
            if runner != victim or state not in ("Pending", "Running"):
                continue
            # A new attempt started, or the run concluded (from the outcome its
            # attempt recorded, when the body had finished).
            retried = [when for when, rid, st, _, n in history
                       if rid == run_id and when > at
                       and ((st == "Running" and n > attempt) or st in FINAL)]
            if retried:
                out.append(min(retried) - at)
    return out


def analyse(kind: str, journal: Path, accepted: set[str],
            faults: list[tuple[float, str, str]], history: History) -> Figures:
    """Figures from the journal: each (event id, worker pid) is one body execution."""
    spans: dict[str, dict[str, list[float]]] = defaultdict(dict)
    ended: set[str] = set()
    # "<event id>/<n>" -> when each execution of the task's body ended, and when its
    # call first returned to the flow (its result stored for reuse).
    task_bodies: dict[str, list[float]] = defaultdict(list)
    task_returned: dict[str, float] = {}
    for line in journal.read_text().splitlines() if journal.exists() else []:
        what, event_id, pid, at = line.split()
        if what in ("task", "done"):
            if event_id.rsplit("/", 1)[0] in accepted:
                if what == "task":
                    task_bodies[event_id].append(float(at))
                else:
                    task_returned[event_id] = min(float(at), task_returned.get(event_id, float(at)))
            continue
        span = spans[event_id].setdefault(pid, [float(at), float(at)])
        span[1] = max(span[1], float(at))
        if what == "end":
            ended.add(event_id)
    figures = Figures(kind, accepted=len(accepted), executed=len(ended & accepted))
    figures.lost = sorted(accepted - ended)
    figures.recovery = recoveries(history, faults)
    figures.tasks_completed = len(task_returned)
    # A task whose call had returned, and whose body ran again afterwards. A body that
    # ended but whose call had not returned yet (killed before its result was stored)
    # was cut off, like a body cut off mid-way.
    figures.tasks_rerun = sum(1 for key, returned in task_returned.items()
                              if any(at > returned for at in task_bodies.get(key, [])))
    for event_id, by_pid in spans.items():
        if event_id not in accepted:
            continue  # another fault kind's event
        runs = sorted(by_pid.values())
        if len(runs) > 1:
            figures.executed_twice += 1
            latest_end = runs[0][1]
            for later in runs[1:]:
                if later[0] < latest_end:  # started before an earlier execution's last line
                    figures.concurrent += 1
                    break
                latest_end = max(latest_end, later[1])
    return figures


