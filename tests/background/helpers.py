"""Task-worker processes for the background-task tests, each stopped when the test ends."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TASKS = '''
import os, time
from flowbus import task


@task
def add(x: int, y: int) -> int:
    return x + y


@task
def marked(i: int, seconds: float = 0.0, retaken_seconds: float | None = None) -> int:
    """Appends one line per execution of its body, so a test can count them. It sleeps
    ``seconds``; an execution after the first sleeps ``retaken_seconds`` if given."""
    marks = os.environ["MARKS_DIR"]
    retaken = os.path.exists(os.path.join(marks, f"{i}.start"))
    with open(os.path.join(marks, f"{i}.start"), "a") as f:
        f.write(f"{os.getpid()}\\n")
    time.sleep(retaken_seconds if retaken and retaken_seconds is not None else seconds)
    with open(os.path.join(marks, f"{i}.end"), "a") as f:
        f.write(f"{os.getpid()}\\n")
    return i * i


@task(retries=2)
def flaky(path: str) -> str:
    count = int(open(path).read()) + 1 if os.path.exists(path) else 1
    open(path, "w").write(str(count))
    if count < 3:
        raise RuntimeError(f"attempt {count} fails")
    return f"ok after {count}"


@task
def spins(i: int, seconds: float) -> int:
    """Python code that runs ``seconds`` (it can be interrupted), marking start and end."""
    marks = os.environ["MARKS_DIR"]
    open(os.path.join(marks, f"{i}.start"), "a").write(f"{os.getpid()}\\n")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with open(os.path.join(marks, f"{i}.ticks"), "a") as f:
            f.write(".")
        time.sleep(0.02)
    open(os.path.join(marks, f"{i}.end"), "a").write(f"{os.getpid()}\\n")
    return i


@task
def fails() -> None:
    raise ValueError("the body said no")


class Refused(Exception):
    def __init__(self, who: str, code: int) -> None:
        super().__init__(who, code)
        self.who, self.code = who, code


class Opaque(Exception):
    """Its args are not JSON: the caller gets a FailedRun with its message."""

    def __init__(self) -> None:
        super().__init__(object())

    def __str__(self) -> str:
        return "an opaque failure"


@task
def refuses(who: str) -> None:
    raise Refused(who, 7)


@task
def opaque() -> None:
    raise Opaque()


@task(timeout_seconds=0.5)
def too_slow() -> None:
    time.sleep(5)


class Declined(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.retry_after: int | None = None


@task
def declines() -> None:
    exc = Declined("over quota")
    exc.retry_after = 30  # set outside args (the constructor sets None)
    exc.details = {"limit": 100, "used": [60, 41]}
    exc.handle = object()  # not JSON: it cannot travel
    exc.add_note("see the quota page")
    raise exc


@task
def chatty(i: int) -> int:
    from flowbus import get_run_logger

    get_run_logger().info("chatty %d says hello", i)
    get_run_logger().warning("chatty %d is done", i)
    return i


@task
def waits(name: str) -> str:
    """Logs, then waits for the file ``<MARKS_DIR>/<name>.go`` before logging again."""
    from flowbus import get_run_logger

    get_run_logger().info("%s is waiting", name)
    go = os.path.join(os.environ["MARKS_DIR"], f"{name}.go")
    while not os.path.exists(go):
        time.sleep(0.02)
    get_run_logger().info("%s was released", name)
    return name


@task
def big(n: int) -> str:
    return "x" * n


@task(result_storage=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
def stored(x: int) -> int:
    return x


not_a_task = 42
'''


def write_tasks(root: Path) -> None:
    (root / "bg_tasks.py").write_text(TASKS)


@contextmanager
def task_worker(root: Path, env: dict[str, str], *entrypoints: str,
                extra: tuple[str, ...] = ()) -> Iterator[subprocess.Popen[str]]:
    """A ``flowbus task-worker`` process serving ``entrypoints``, ready when yielded."""
    log = (root / f"worker-{time.monotonic_ns()}.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "flowbus.cli", "task-worker", *entrypoints, *extra],
        cwd=root, env=env, stdout=subprocess.PIPE, stderr=log, text=True,
        start_new_session=True)
    log.close()
    try:
        wait_ready(proc)
        yield proc
    finally:
        stop(proc)


def wait_ready(proc: subprocess.Popen[str], within: float = 60.0) -> None:
    line_matching(proc, "serving", within)


class _Output:
    """A process's output lines, read on a thread of their own. (A ``select`` on the pipe
    missed a line the text reader had already buffered with the one before it: two lines
    printed at once left the second unseen.) Reading also keeps the pipe from filling."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self.thread.start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                self.lines.put(line)
        except (OSError, ValueError):  # closed under the reader
            pass
        self.lines.put(None)


_outputs: weakref.WeakKeyDictionary[subprocess.Popen[str], _Output] = weakref.WeakKeyDictionary()


def line_matching(proc: subprocess.Popen[str], pattern: str, within: float = 60.0) -> str:
    """The first line of ``proc``'s output matching ``pattern`` (a regular expression),
    read within ``within`` seconds; fails if the process exits first."""
    output = _outputs.get(proc)
    if output is None:
        output = _outputs[proc] = _Output(proc)
    deadline = time.monotonic() + within
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = output.lines.get(timeout=left)
        except queue.Empty:
            break
        if line is None:
            output.lines.put(None)  # a later call sees the end too
            raise AssertionError(f"task worker exited {proc.wait(timeout=30)}")
        if re.search(pattern, line):
            return line
    raise AssertionError(f"no line of the task worker matching {pattern!r}")


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    output = _outputs.get(proc)
    if output is not None:
        output.thread.join(timeout=10)  # it ends at the end of the output
    if proc.stdout is not None and (output is None or not output.thread.is_alive()):
        proc.stdout.close()
