"""The background-task example of docs/sdk.md runs as written: its worker command, its
task module and its caller, in separate processes; its state events reach the stream."""

from __future__ import annotations

import asyncio
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from events.bus import Bus
from tests.background.helpers import stop, wait_ready

DOC = Path(__file__).resolve().parents[2] / "docs" / "sdk.md"


def example() -> tuple[dict[str, str], list[str]]:
    text = DOC.read_text()
    section = text[text.index("## Background tasks"):]
    section = section[:section.index("\n## ", 5)]
    files = dict(re.findall(r"<!-- background-example: (\S+) -->\n```python\n(.+?)```", section,
                            re.S))
    [command] = re.findall(r"```bash\n(flowbus task-worker .+?)\n```", section)
    return files, shlex.split(command)


async def test_the_docs_background_example_runs(tmp_path: Path, flowbus_env: dict[str, str],
                                               bus: Bus) -> None:
    files, command = example()
    assert set(files) == {"my_tasks.py", "caller.py"}
    for name, source in files.items():
        (tmp_path / name).write_text(source)
    worker = await asyncio.to_thread(
        subprocess.Popen, [sys.executable, "-m", "flowbus.cli", *command[1:]], cwd=tmp_path,
        env=flowbus_env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        start_new_session=True)
    try:
        await asyncio.to_thread(wait_ready, worker)
        out = await asyncio.to_thread(
            subprocess.run, [sys.executable, "caller.py"], cwd=tmp_path, env=flowbus_env,
            capture_output=True, text=True, timeout=120)
    finally:
        await asyncio.to_thread(stop, worker)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["3 13 6", "Completed 6"]
    # The runs' state changes are events like any task run's.
    consumer = await bus.consumer(
        "check", filter_subjects=[f"{bus.layout.namespace}.events.flowbus.task-run.Completed"])
    seen: list[Any] = []
    for _ in range(60):
        seen += await consumer.fetch(10, max_wait=0.5)
        if len(seen) >= 3:
            break
    assert len(seen) == 3
    assert {d.event.data["task_name"] for d in seen} == {"add", "total"}
