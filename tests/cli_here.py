"""``flowbus ...`` in the test's own process, answering like the ``flowbus`` program.

A process start costs seconds on a loaded machine. Tests whose subject is a command's
answer (its exit status, output and message) run it here; each command module keeps
tests that start the real program, for what only a process shows.
"""

from __future__ import annotations

import asyncio
import subprocess

from click.testing import CliRunner

from flowbus.cli import cli


def invoke_here(*args: str, env: dict[str, str],
                stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the command with the ``FLOWBUS_*`` settings of ``env`` (and ``stdin`` as its
    input). An exception escaping the command fails the test, as a traceback of the
    program would."""
    settings = {k: v for k, v in env.items() if k.startswith("FLOWBUS_")}
    result = CliRunner().invoke(cli, list(args), input=stdin, env=settings,
                                catch_exceptions=False)
    return subprocess.CompletedProcess(["flowbus", *args], result.exit_code, result.stdout,
                                       result.stderr)


async def flowbus_here(*args: str, env: dict[str, str],
                       stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """:func:`invoke_here` on a thread (commands run their own event loop)."""
    return await asyncio.to_thread(invoke_here, *args, env=env, stdin=stdin)
