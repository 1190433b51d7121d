"""Sampling running processes with py-spy (the ``bench`` extra) and summing the samples up.

:class:`Spy` attaches ``py-spy record`` to a process for a while (``--format raw``);
:func:`summarize` prints where the samples fell, idle waits in ``select`` and imports
left out: own samples per function, and per innermost flowbus function.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

PY_SPY = Path(sys.executable).parent / "py-spy"
OURS = re.compile(r"\((?:\S*/)?(events|gateway|orchestrator|runners|flowbus)/([\w/]+)\.py:\d+\)$")


class Spy:
    """``py-spy record`` attached to ``pid`` until :meth:`stop`, into ``output``."""

    def __init__(self, pid: int, output: Path, rate: int = 200) -> None:
        self.output = output
        self.proc = subprocess.Popen(
            [str(PY_SPY), "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw",
             "--gil", "--nonblocking", "--output", str(output)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def summarize(title: str, raws: list[Path], top: int = 20) -> None:
    """Print where the samples of ``raws`` fell (busy samples only)."""
    own: dict[str, int] = {}
    ours: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    for raw in raws:
        if not raw.exists():
            print(f"{title}: no profile written ({raw.name})")
            return
        for line in raw.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit() or "_find_and_load" in stack:
                continue
            frames = stack.split(";")
            leaf = frames[-1]
            if leaf.startswith(("EpollSelector.select", "_PollLikeSelector.select",
                                "select (selectors", "wait (threading", "get (queue")):
                continue  # idle: waiting for the next event or call
            n = int(count)
            total += n
            leaf = re.sub(r":\d+\)$", ")", leaf)
            own[leaf] = own.get(leaf, 0) + n
            named = {f"{m.group(1)}/{m.group(2)}:{f.split(' (')[0]}": None
                     for f in frames if (m := OURS.search(f))}
            for name in named:
                inclusive[name] = inclusive.get(name, 0) + n
            if named:
                name = list(named)[-1]
                ours[name] = ours.get(name, 0) + n
    print(f"{title}: {total} busy samples")
    for heading, table in (("own samples by function", own),
                           ("samples by innermost flowbus function", ours),
                           ("samples under each flowbus function (inclusive)", inclusive)):
        print(f"  {heading}:")
        for name, count in sorted(table.items(), key=lambda kv: -kv[1])[:top]:
            print(f"    {100 * count / max(1, total):5.1f}%  {name}")
